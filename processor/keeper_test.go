package processor

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func fetchOf(topic string, part int32, logStart int64, offsets ...int64) kgo.Fetches {
	fp := kgo.FetchPartition{Partition: part, LogStartOffset: logStart}
	for _, o := range offsets {
		fp.Records = append(fp.Records, &kgo.Record{Topic: topic, Partition: part, Offset: o})
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: topic, Partitions: []kgo.FetchPartition{fp}}}}}
}

// TestStartWatchFetched: records deleted between two fetches of a running
// worker (the next offset it expected is below the log start the fetch
// reports) are reported, counted and make it not ready until acknowledged;
// gaps above the log start (transaction markers, compaction) are not.
func TestStartWatchFetched(t *testing.T) {
	var logs bytes.Buffer
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	w := newStartWatch("g", slog.New(slog.NewTextHandler(&logs, nil)), newKeeperMetrics(nil), func() time.Time { return now })

	w.fetched(fetchOf("in", 0, 0, 0, 1, 2)) // first fetch: nothing expected yet
	w.fetched(fetchOf("in", 0, 0, 4, 5))    // gap at 3 above the log start: a marker
	w.fetched(fetchOf("in", 1, 10, 10, 11)) // first fetch of partition 1 at its log start
	if why := w.notReady(); why != "" {
		t.Fatalf("not ready after gaps that lose nothing: %s", why)
	}
	w.fetched(fetchOf("in", 0, 9, 9, 10)) // 6, 7, 8 deleted unread
	why := w.notReady()
	if !strings.Contains(why, "3 records expired") || !strings.Contains(why, "in/0: expected offset 6, log start 9") {
		t.Errorf("notReady = %q, want 3 records of in/0 from offset 6", why)
	}
	if l := logs.String(); !strings.Contains(l, "records_lost=3") || !strings.Contains(l, "next_offset=6") || !strings.Contains(l, "log_start=9") {
		t.Errorf("log does not report the loss:\n%s", l)
	}
	if n := w.ack(); n != 3 {
		t.Errorf("ack = %d, want 3", n)
	}
	if why := w.notReady(); why != "" {
		t.Errorf("still not ready after ack: %s", why)
	}
	w.fetched(fetchOf("in", 0, 9, 11)) // continues: no new loss
	if why := w.notReady(); why != "" {
		t.Errorf("not ready after a fetch that loses nothing: %s", why)
	}
}

// TestPurger: the purge deletes each partition's records below the
// committed offset it was told of, keeps the partition's last record,
// counts what it deleted, and treats an offset already purged further (a
// stale one from before a rebalance) as done, not as an error.
func TestPurger(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "r"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: "r", Partition: 0, Value: []byte{byte(i)}})
		recs = append(recs, &kgo.Record{Topic: "r", Partition: 1, Value: []byte{byte(i)}})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	starts := func() map[int32]int64 {
		l, err := adm.ListStartOffsets(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]int64{}
		l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return out
	}
	var logs bytes.Buffer
	m := newKeeperMetrics(nil)
	p := newPurger(adm, "r", time.Hour, slog.New(slog.NewTextHandler(&logs, nil)), m)
	p.committed(map[string]map[int32]kgo.EpochOffset{"r": {0: {Offset: 4}, 1: {Offset: 10}}, "other": {0: {Offset: 7}}})
	p.purge(ctx)
	if got := starts(); got[0] != 4 || got[1] != 9 {
		t.Errorf("log starts after purge = %v, want 0:4 (committed) and 1:9 (all but the last record)", got)
	}
	if n := counterValue(t, m.purged); n != 13 {
		t.Errorf("purged = %v, want 13", n)
	}
	// A stale, lower offset (this worker's, from before another purged
	// further) and an unchanged one: nothing to do, no error.
	p2 := newPurger(adm, "r", time.Hour, slog.New(slog.NewTextHandler(&logs, nil)), m)
	p2.committed(map[string]map[int32]kgo.EpochOffset{"r": {0: {Offset: 2}, 1: {Offset: 10}}})
	p2.purge(ctx)
	if got := starts(); got[0] != 4 || got[1] != 9 {
		t.Errorf("log starts after a stale purge = %v, want unchanged 0:4 1:9", got)
	}
	if n := counterValue(t, m.purgeErrors); n != 0 || logs.Len() != 0 {
		t.Errorf("purge errors = %v, logs:\n%s", n, logs.String())
	}
	// The goroutine: stop purges once more.
	go p.run()
	p.committed(map[string]map[int32]kgo.EpochOffset{"r": {0: {Offset: 8}}})
	p.stop(5 * time.Second)
	if got := starts(); got[0] != 8 {
		t.Errorf("log start of partition 0 after stop = %d, want 8", got[0])
	}
}
