//go:build wmbench

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaWatermarkCost measures (it asserts nothing about time) what
// forwarding watermarks through the repartition topic costs (issue 15): a
// repartitioned pipeline (count, sum and p99 per key, 10s tumbling
// windows) over EDDY_WMBENCH_RECORDS (500,000) pre-loaded JSON records on
// six partitions, 1,000 keys, event time +1ms per record. Each run is a
// new application on the same input; runs alternate between the binaries
// named in EDDY_WMBENCH_BINS (comma-separated, e.g. a build of main before
// the watermarks commit and one after; default: this tree's). The clock
// runs from the first commit seen to the moment the input and the
// repartition topic are processed. The binaries must be built with the
// eddytest tag: the run turns off the purge of the repartition topic
// (EDDY_TEST_PURGE_INTERVAL) so that every record written to it can be
// counted. Built only with the wmbench tag:
//
//	EDDY_TEST_BROKERS=127.0.0.1:43737 EDDY_WMBENCH_BINS=/tmp/eddy-before,/tmp/eddy-after \
//	  go test -tags wmbench -run TestKafkaWatermarkCost -v -timeout 60m ./cmd/eddy/
func TestKafkaWatermarkCost(t *testing.T) {
	brokers := kafkatest.Real(t)
	n, _ := strconv.Atoi(os.Getenv("EDDY_WMBENCH_RECORDS"))
	if n == 0 {
		n = 500_000
	}
	reps, _ := strconv.Atoi(os.Getenv("EDDY_WMBENCH_REPS"))
	if reps == 0 {
		reps = 3
	}
	bins := []string{eddyBin}
	if v := os.Getenv("EDDY_WMBENCH_BINS"); v != "" {
		bins = strings.Split(v, ",")
	}
	in := kafkatest.Name(t, "in")
	kafkatest.CreateTopic(t, brokers, in, 6)
	t0 := (time.Now().UnixMilli() - 2*3600_000) / testWindow * testWindow
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	var inBytes int64
	for lo := 0; lo < n; lo += 10_000 {
		var recs []*kgo.Record
		for i := lo; i < min(n, lo+10_000); i++ {
			e := tevent{ID: fmt.Sprintf("r-%07d", i), TS: t0 + int64(i), Service: fmt.Sprintf("svc-%02d", i*7919%50),
				Endpoint: fmt.Sprintf("/e%02d", i*104729%20), Status: 200 + 300*(i%17/16), Latency: i * 31 % 500}
			b, _ := json.Marshal(e)
			inBytes += int64(len(b))
			recs = append(recs, &kgo.Record{Topic: in, Partition: int32(i % 6), Value: b})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("pre-loaded %d records (%d value bytes) into %s", n, inBytes, in)
	kafkatest.ReadAll(t, brokers, in, false) // into the page cache
	for rep := 0; rep < reps; rep++ {
		for _, bin := range bins {
			wmCostRun(t, brokers, bin, in, n)
		}
	}
}

func wmCostRun(t *testing.T, brokers []string, bin, in string, n int) {
	app := kafkatest.Name(t, "app")
	out := kafkatest.Name(t, "out")
	spec := fmt.Sprintf(`app: %s
source:
  topics: [%s]
time:
  field: ts
key: [service, endpoint]
window:
  type: tumbling
  size: 10s
  grace: 5s
aggregates:
  - {name: count, op: count}
  - {name: sum_latency, op: sum, field: latency_ms}
  - {name: p99_latency, op: p99, field: latency_ms}
output:
  topic: %s
commit_interval: 1s
idle_timeout: 24h
`, app, in, out)
	p := t.TempDir() + "/pipeline.yaml"
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	saved := eddyBin
	eddyBin = bin
	// The repartition topic is not purged during the run, so its records
	// can be counted and weighed afterwards (the binaries must be built
	// with the eddytest tag for the hook).
	w := startWorker(t, p, strings.Join(brokers, ","), t.TempDir(), "EDDY_TEST_PURGE_INTERVAL=24h")
	eddyBin = saved
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	part := app + "-repartition"
	var first, done time.Time
	var cpu0 float64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		offs, err := adm.FetchOffsets(ctx, app)
		ends, err2 := adm.ListEndOffsets(ctx, in, part)
		cancel()
		if err == nil && err2 == nil {
			var committed int64
			offs.Each(func(o kadm.OffsetResponse) {
				if o.Topic == in {
					committed += o.At
				}
			})
			if committed > 0 && first.IsZero() {
				first, cpu0 = time.Now(), procCPU(w.cmd.Process.Pid)
			}
			caught := committed >= int64(n)
			ends.Each(func(o kadm.ListedOffset) {
				if o.Topic != part {
					return
				}
				c, _ := offs.Lookup(o.Topic, o.Partition)
				// Watermark records keep coming: the repartition topic is
				// done when at most a few of them follow the commit.
				caught = caught && (c.At >= o.Offset || o.Offset-c.At < 50 && onlyWatermarks(t, brokers, part, o.Partition, c.At, o.Offset))
			})
			if caught && !first.IsZero() {
				done = time.Now()
				break
			}
		}
		select {
		case err := <-w.done:
			w.exited = true
			t.Fatalf("eddy exited: %v", err)
		default:
		}
		time.Sleep(100 * time.Millisecond)
	}
	cpu := procCPU(w.cmd.Process.Pid) - cpu0
	el := done.Sub(first)
	// Read before the stop: eddy purges the repartition topic once more
	// at shutdown.
	recs := kafkatest.ReadAll(t, brokers, part, false)
	var data, wm, dataBytes, wmBytes, hdrBytes int64
	for _, r := range recs {
		sz := int64(len(r.Key) + len(r.Value))
		var h int64
		for _, x := range r.Headers {
			h += int64(len(x.Key) + len(x.Value))
		}
		if isWatermark(r) {
			wm++
			wmBytes += sz + h
		} else {
			data++
			dataBytes += sz + h
			hdrBytes += h
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := adm.ListTopics(ctx, part)
	var dirs kadm.DescribedAllLogDirs
	if err == nil {
		dirs, err = adm.DescribeAllLogDirs(ctx, td.TopicsSet())
	}
	var disk int64
	if err != nil {
		t.Logf("describe log dirs: %v", err)
	} else {
		dirs.Each(func(d kadm.DescribedLogDir) {
			d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
				if p.Topic == part {
					disk += p.Size
				}
			})
		})
	}
	_ = w.stop(syscall.SIGTERM)
	t.Logf("%s: %d records in %.2fs = %.0f records/s, %.1f CPU-s per M records; repartition: %d data records (%d bytes key+value+headers, %d of them header bytes), %d watermark records (%d bytes); %d bytes on disk",
		bin, n, el.Seconds(), float64(n)/el.Seconds(), cpu/float64(n)*1e6, data, dataBytes, hdrBytes, wm, wmBytes, disk)
}

// procCPU returns user+system CPU seconds of a process (/proc/PID/stat).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}
