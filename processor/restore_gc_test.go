package processor

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	rtmetrics "runtime/metrics"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/gcboost"
)

// gogc reads GOGC without setting it (debug.SetGCPercent would race with
// the App's hold).
func gogc() int {
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestRestoreHoldsGC: while an App restores its partitions Go's collector
// runs at gcboost.Percent, and once the App is ready (every partition
// restored) it is back at what it was. Not parallel: another test's
// restore would hold it too.
func TestRestoreHoldsGC(t *testing.T) {
	t.Setenv("GOGC", "") // as unset: the hold acts
	if before := gogc(); before == gcboost.Percent {
		t.Fatalf("GOGC is %d before the test: it would show nothing", before)
	}
	cluster, brokers := benchCluster(t)
	defer cluster.Close()
	const rows = 30_000
	reg := benchPreload(t, brokers, rows, func(i int, _ *rand.Rand) int { return i })
	spec := benchSpecOf(t, "24h", "24h", "  - {name: requests, op: count}\n")
	benchRunUntilCommitted(t, brokers, spec, reg, t.TempDir())
	before := gogc()

	app, err := New(Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir(), Registry: reg,
		SessionTimeout: 6 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	held := false
	for !app.Ready() {
		select {
		case err := <-done:
			t.Fatalf("app stopped: %v", err)
		default:
		}
		held = held || gogc() == gcboost.Percent
		time.Sleep(100 * time.Microsecond)
	}
	restored := app.m.restored
	if n := counterValue(t, restored); n < rows {
		t.Fatalf("restored %v changelog records, want at least %d: not a restore from scratch", n, rows)
	}
	if !held {
		t.Error("GOGC never at the hold's percent while the App restored")
	}
	if after := gogc(); after != before {
		t.Errorf("GOGC %d once ready, want %d back", after, before)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
