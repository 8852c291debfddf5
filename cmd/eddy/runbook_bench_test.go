//go:build runbookbench

package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaRunbookThroughput measures (it asserts nothing about time) a
// pipeline's throughput with no runbook preview open and with ten
// previews of its input, on the real broker: an `eddy run` worker and an
// `eddy runbook serve` start, the previews open (ten live views of ten
// blocks), then the records are produced, and the clock stops when the
// group has committed them all. Runs alternate (none, ten, none, ten, ...)
// so the shared machine's noise falls on both. A measurement, not a test of
// the suite: built only with the runbookbench tag (BENCHMARKS.md,
// "Runbook previews beside a pipeline").
func TestKafkaRunbookThroughput(t *testing.T) {
	brokers := kafkatest.Real(t)
	const reps = 3
	for i := 0; i < 2*reps; i++ {
		previews := 10 * (i % 2)
		rate, fed := runbookRun(t, brokers, previews)
		t.Logf("run %d: %2d previews: %8.0f records/s (previews read %s)", i+1, previews, rate, fed)
	}
}

// benchBlocks are ten blocks over the e2e scenario's input: charts,
// tables and event lists, with and without filters.
func benchBlocks(topic string) string {
	pipe := func(key, filter, aggs string) string {
		f := ""
		if filter != "" {
			f = "filter: '" + filter + "'\n"
		}
		return fmt.Sprintf("source:\n  topics: [%s]\ntime:\n  field: ts\n%skey: [%s]\nwindow:\n  type: tumbling\n  size: 10s\n  grace: 2s\naggregates:\n%s", topic, f, key, aggs)
	}
	count := "  - {name: requests, op: count}\n"
	lat := "  - {name: p99, op: p99, field: latency_ms}\n  - {name: total, op: sum, field: latency_ms}\n"
	blocks := []string{
		pipe("endpoint", "", count) + "---\ndisplay: chart\n",
		pipe("service", "", lat) + "---\ndisplay: chart\nvalue: p99\n",
		pipe("endpoint", "status >= 500", count) + "---\ndisplay: chart\n",
		pipe("service, endpoint", "", count+lat) + "---\ndisplay: chart\ntop: 10\n",
		pipe("service", "", count+lat) + "---\ndisplay: table\n",
		pipe("endpoint", "latency_ms > 300", count) + "---\ndisplay: table\n",
		pipe("service, endpoint", "status >= 400", count) + "---\ndisplay: table\nrows: 50\n",
		pipe("endpoint", "", count) + "---\ndisplay: events\nfilter: 'status >= 500'\n",
		pipe("service", "", count) + "---\ndisplay: events\nfilter: 'latency_ms > 500'\n",
		pipe("endpoint", "", count) + "---\ndisplay: events\nstep: output\n",
	}
	var b strings.Builder
	b.WriteString("# Bench\n")
	for i, x := range blocks {
		fmt.Fprintf(&b, "\nBlock %d.\n\n```eddy\n%s```\n", i+1, x)
	}
	return b.String()
}

func runbookRun(t *testing.T, brokers []string, previews int) (float64, string) {
	sc := newScenario(uint64(previews+1), 3, 25_000, 12) // 300,000 events over 12 keys
	e := newE2EWith(t, brokers, "at_least_once", sc)
	recs := sc.records(e.in)
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr := w.httpAddr(t)
	waitFor(t, 60*time.Second, "the worker ready", func() (bool, string) {
		r := httpGet(t, "http://"+addr+"/readyz")
		return r.code == 200, r.body
	})
	var srv *worker
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var reading atomic.Int32
	var fed sync.Map // block -> last "fed" seen
	if previews > 0 {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "bench.md"), []byte(benchBlocks(e.in)), 0o644); err != nil {
			t.Fatal(err)
		}
		srv = startEddy(t, nil, "runbook", "serve", dir, "--brokers", e.brokerList(), "--http-addr", "127.0.0.1:0")
		var raddr string
		re := regexp.MustCompile(`at http://(\S+)/console/runbook.html`)
		waitFor(t, 30*time.Second, "eddy runbook serve's address", func() (bool, string) {
			m := re.FindStringSubmatch(srv.logs())
			if m != nil {
				raddr = m[1]
			}
			return m != nil, srv.logs()
		})
		fedRe := regexp.MustCompile(`"fed":(\d+)`)
		for i := 0; i < previews; i++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/api/v1/runbooks/bench.md/blocks/%d/live", raddr, i), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				cancel()
				t.Fatalf("preview %d: %v %v", i, err, resp)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer resp.Body.Close()
				sc := bufio.NewScanner(resp.Body)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				counted := false
				for sc.Scan() {
					l := sc.Text()
					if !counted && strings.Contains(l, `"reading":true`) {
						counted = true
						reading.Add(1)
					}
					if m := fedRe.FindStringSubmatch(l); m != nil {
						fed.Store(i, m[1])
					}
				}
			}()
		}
		waitFor(t, 60*time.Second, "every preview to read", func() (bool, string) {
			return int(reading.Load()) == previews, fmt.Sprint(reading.Load())
		})
	}
	start := time.Now()
	produceSync(t, brokers, recs)
	e.waitIdle(t, 300*time.Second, w)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	var fedList []string
	fed.Range(func(_, v any) bool { fedList = append(fedList, v.(string)); return true })
	if srv != nil {
		if err := srv.stop(syscall.SIGTERM); err != nil {
			t.Errorf("eddy runbook serve exited with %v", err)
		}
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v", err)
	}
	return float64(len(recs)) / elapsed.Seconds(), strings.Join(fedList, ",")
}
