//go:build consolebench

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaConsoleThroughput measures (it asserts nothing about time) the
// pipeline's throughput with no console view open and with ten, on the
// real broker: a worker starts, the views open, then the records are
// produced, and the clock stops when the group has committed them all.
// Runs alternate (none, ten, none, ten, ...) so the shared machine's
// noise falls on both. A measurement, not a test of the suite: it is built
// only with the consolebench tag (BENCHMARKS.md, "The console's cost").
func TestKafkaConsoleThroughput(t *testing.T) {
	brokers := kafkatest.Real(t)
	const reps = 3
	for i := 0; i < 2*reps; i++ {
		views := 10 * (i % 2)
		rate, bytes := consoleRun(t, brokers, views)
		t.Logf("run %d: %2d views: %8.0f records/s (views received %d bytes)", i+1, views, rate, bytes)
	}
}

func consoleRun(t *testing.T, brokers []string, views int) (float64, int64) {
	sc := newScenario(uint64(views+1), 3, 25_000, 12) // 300,000 events over 12 keys
	e := newE2EWith(t, brokers, "at_least_once", sc)
	recs := sc.records(e.in)
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr := w.httpAddr(t)
	waitFor(t, 60*time.Second, "the worker ready", func() (bool, string) {
		r := httpGet(t, "http://"+addr+"/readyz")
		return r.code == 200, r.body
	})
	// Ten views as a user would open them: the picture, tails of the input
	// (filtered) and of every other step, the results' live tail.
	paths := []string{
		"/api/v1/status/live",
		"/api/v1/tail?step=input&filter=" + url.QueryEscape("status >= 500"),
		"/api/v1/tail?step=input",
		"/api/v1/tail?step=input&filter=" + url.QueryEscape(`endpoint == "/a"`),
		"/api/v1/tail?step=output",
		"/api/v1/tail?step=output&filter=" + url.QueryEscape(`service == "checkout"`),
		"/api/v1/tail?step=late",
		"/api/v1/tail?step=dead-letter",
		"/api/v1/status/live",
		"/api/v1/tail?step=input&filter=" + url.QueryEscape("latency_ms > 300"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var got atomic.Int64
	for i := 0; i < views; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+paths[i%len(paths)], nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			cancel()
			t.Fatalf("view %s: %s", paths[i], resp.Status)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			n, _ := io.Copy(io.Discard, resp.Body)
			got.Add(n)
		}()
	}
	start := time.Now()
	produceSync(t, brokers, recs)
	e.waitIdle(t, 300*time.Second, w)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v", err)
	}
	if views > 0 && got.Load() == 0 {
		t.Errorf("the views received nothing: %s", fmt.Sprint(got.Load()))
	}
	return float64(len(recs)) / elapsed.Seconds(), got.Load()
}
