//go:build lookupbench

package processor

// The lookup table size measurement of docs/pipeline-spec.md ("How big
// may a table be"): load time, Go heap and disk per 100k and 1M entries,
// on the real broker. A measurement, not a test of the suite: run it with
//
//	EDDY_TEST_BROKERS=127.0.0.1:9092 go test -tags lookupbench -run TestLookupLoadSize -v ./processor/

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/topology"
)

func TestLookupLoadSize(t *testing.T) {
	brokers := kafkatest.Real(t)
	for _, n := range []int{100_000, 1_000_000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			topic := kafkatest.Name(t, "table")
			kafkatest.CreateCompactedTopic(t, brokers, topic, 3)
			cl := kafkatest.Client(t, brokers, kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
			ctx := context.Background()
			began := time.Now()
			for i := 0; i < n; i++ {
				v := fmt.Sprintf(`{"team":"team-%d","plan":"plan-%d","region":"eu-west-%d","owner":"someone-%d@example.com"}`, i%500, i%7, i%3, i)
				cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("/api/v1/endpoint/%08d", i)), Value: []byte(v)}, func(_ *kgo.Record, err error) {
					if err != nil {
						t.Error(err)
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("produced %d entries in %s", n, time.Since(began).Round(time.Millisecond))

			spec, err := topology.Parse([]byte(`app: size
source: {topics: [in]}
lookups: [{name: t, topic: ` + topic + `, on: endpoint, fields: [team, plan]}]
key: [team]
window: {type: tumbling, size: 10s}
aggregates: [{name: n, op: count}]
output: {topic: out}
`))
			if err != nil {
				t.Fatal(err)
			}
			p, err := newPipeline(spec)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			began = time.Now()
			stop, err := p.bindTables(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(began)
			var peak runtime.MemStats
			runtime.ReadMemStats(&peak)
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			var disk int64
			_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if fi, err := d.Info(); err == nil {
						disk += fi.Size()
					}
				}
				return nil
			})
			// Lookups: first of a key (from Pebble), then again (cache).
			const lookups = 100_000
			keys := make([]string, lookups)
			for i := range keys {
				keys[i] = fmt.Sprintf("/api/v1/endpoint/%08d", (i*7919)%n)
			}
			fields := map[string]any{}
			pass := func() time.Duration {
				lb := time.Now()
				for i, k := range keys {
					fields["endpoint"] = k
					if re := p.tables.lookup(0, fields); re != nil || fields["team"] == nil {
						t.Fatalf("lookup %d: %v %v", i, re, fields)
					}
				}
				return time.Since(lb) / lookups
			}
			cold, warm := pass(), pass()
			runtime.GC()
			var used runtime.MemStats
			runtime.ReadMemStats(&used)
			per := fmt.Sprintf("first lookup of a key %s, again %s; Go heap in use after %d lookups %d MiB", cold, warm, lookups, used.HeapInuse>>20)
			stop()
			t.Logf("%d entries: loaded in %s (%.0f entries/s); Go heap in use after load %d MiB (before %d MiB, total allocated during load %d MiB); disk %d MiB; %s; RSS %s",
				n, took.Round(time.Millisecond), float64(n)/took.Seconds(), after.HeapInuse>>20, before.HeapInuse>>20,
				(peak.TotalAlloc-before.TotalAlloc)>>20, disk>>20, per, rss())
		})
	}
}

func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}
