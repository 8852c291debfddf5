package main

import (
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// scrapeSeries returns the samples of metric name on the worker's
// /metrics, by their label text ({...}).
func scrapeSeries(t *testing.T, addr, name string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		out[l[len(name):i]] = v
	}
	return out
}

// TestPartitionMetricsWithoutRecords (issue 23, item 7): with records on
// only some partitions and an idle timeout that advances idle tasks,
// eddy_stream_time_seconds is set for every partition that has had a
// record, and never to a time near 1970 (a task without records of its
// own learns the source partitions' watermarks), and eddy_consumer_lag_records is
// exported, at 0 once everything is processed, for every owned partition
// of the input and repartition topics, records or not. Also: a misspelled
// aggregate field is counted in eddy_field_missing_total for every record.
func TestPartitionMetricsWithoutRecords(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Kfake(t)
	sc := newScenario(3, 4, 20, 2) // source records on partitions 0 and 1 only
	e := newE2EWith(t, brokers, "at_least_once", sc)
	y, err := os.ReadFile(e.spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.spec, []byte(strings.NewReplacer("idle_timeout: 1h", "idle_timeout: 1s",
		// A misspelled field (issue 14 item 5): counted in every record.
		"aggregates:\n", "aggregates:\n  - {name: typo_max, op: max, field: latncy_ms}\n").Replace(string(y))), 0o644); err != nil {
		t.Fatal(err)
	}
	produceSync(t, brokers, sc.records(e.in))
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	e.waitIdle(t, 60*time.Second, w)

	// Repartition partitions with records of the source (every one also
	// has eddy's watermark records, header eddy.wm).
	withRecords := map[string]bool{}
	for _, r := range kafkatest.ReadAll(t, brokers, e.app+"-repartition", true) {
		if !slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == "eddy.wm" }) {
			withRecords[strconv.Itoa(int(r.Partition))] = true
		}
	}
	if len(withRecords) == 0 || len(withRecords) == int(sc.parts) {
		t.Fatalf("repartition partitions with records: %v; the test needs some with and some without", withRecords)
	}

	addr := w.metricsAddr(t)
	minTime := float64(sc.t0) / 1000
	deadline := time.Now().Add(30 * time.Second)
	for {
		var problems []string
		// Stream time: only partitions that had records, and a real time.
		st := scrapeSeries(t, addr, "eddy_stream_time_seconds")
		for p := range withRecords {
			v, ok := st[`{partition="`+p+`"}`]
			if !ok {
				problems = append(problems, "no stream time for partition "+p+" (it has records)")
			} else if v < minTime {
				problems = append(problems, "stream time of partition "+p+" is "+strconv.FormatFloat(v, 'f', 0, 64))
			}
		}
		// A task without records of its own may have a stream time (the
		// source partitions' watermarks reach it), but never one near 1970.
		for labels, v := range st {
			if v < minTime {
				problems = append(problems, "stream time "+labels+" is "+strconv.FormatFloat(v, 'f', 0, 64))
			}
		}
		// Lag: every partition of both topics, at 0.
		lag := scrapeSeries(t, addr, "eddy_consumer_lag_records")
		for _, topic := range []string{e.in, e.app + "-repartition"} {
			for p := range sc.parts {
				v, ok := lag[`{partition="`+strconv.Itoa(int(p))+`",topic="`+topic+`"}`]
				if !ok || v != 0 {
					problems = append(problems, "lag of "+topic+"/"+strconv.Itoa(int(p))+": "+strconv.FormatFloat(v, 'f', 0, 64)+" present="+strconv.FormatBool(ok))
				}
			}
		}
		if len(problems) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %s\nstream time %v\nlag %v", strings.Join(problems, "; "), st, lag)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := metric(t, addr, "eddy_field_missing_total", `aggregate="typo_max"`, `field="latncy_ms"`); n != float64(len(sc.events)) {
		t.Errorf("eddy_field_missing_total{aggregate=typo_max,field=latncy_ms} = %v, want %d (every record)", n, len(sc.events))
	}
	if n := metric(t, addr, "eddy_field_missing_total", `field="latency_ms"`); n != 0 {
		t.Errorf("eddy_field_missing_total{field=latency_ms} = %v, want 0", n)
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}
