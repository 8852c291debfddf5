package runbook

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A fetch's partitions are merged by timestamp, each partition's order
// kept, ties in turn.
func TestMergeByTime(t *testing.T) {
	t0 := time.Unix(100, 0)
	var in []*kgo.Record
	// Partition after partition, as a fetch returns them.
	for p := int32(0); p < 3; p++ {
		for o := int64(0); o < 4; o++ {
			ts := t0.Add(time.Duration(o) * time.Second)
			if p == 2 && o == 0 {
				ts = t0.Add(-time.Second) // the oldest of all
			}
			in = append(in, &kgo.Record{Partition: p, Offset: o, Timestamp: ts})
		}
	}
	out := mergeByTime(in)
	if len(out) != len(in) {
		t.Fatalf("%d records out of %d", len(out), len(in))
	}
	if out[0].Partition != 2 || out[0].Offset != 0 {
		t.Errorf("first: p%d@%d, want the oldest, p2@0", out[0].Partition, out[0].Offset)
	}
	last := map[int32]int64{0: -1, 1: -1, 2: -1}
	for i, r := range out {
		if r.Offset != last[r.Partition]+1 {
			t.Fatalf("record %d: p%d@%d after p%d@%d: a partition's order changed", i, r.Partition, r.Offset, r.Partition, last[r.Partition])
		}
		last[r.Partition] = r.Offset
		if i > 0 && r.Timestamp.Before(out[i-1].Timestamp) {
			t.Fatalf("record %d: timestamps go back", i)
		}
	}
	// Equal timestamps: the n-th of each partition before any n+1-th.
	in = nil
	for p := int32(0); p < 3; p++ {
		for o := int64(0); o < 3; o++ {
			in = append(in, &kgo.Record{Partition: p, Offset: o, Timestamp: t0})
		}
	}
	for i, r := range mergeByTime(in) {
		if r.Offset != int64(i/3) {
			t.Fatalf("equal timestamps: record %d is p%d@%d, want offset %d", i, r.Partition, r.Offset, i/3)
		}
	}
}

// One produce request's records over two partitions, fetched apart: the
// first partition's share waits (up to the merger's wait) for the
// second's, which was never fetched before and has no high watermark known
// yet, so the two come out in timestamp order. A partition that stays
// empty holds the others back only that long.
func TestMergerWaitsForEmptyPartition(t *testing.T) {
	t0 := time.Unix(100, 0)
	wait := 500 * time.Millisecond
	rec := func(p int32, o int64, sec int) *kgo.Record {
		return &kgo.Record{Partition: p, Offset: o, Timestamp: t0.Add(time.Duration(sec) * time.Second)}
	}
	fetch := func(recs ...*kgo.Record) kgo.Fetches {
		parts := map[int32]*kgo.FetchPartition{}
		var order []int32
		for _, r := range recs {
			if parts[r.Partition] == nil {
				parts[r.Partition] = &kgo.FetchPartition{Partition: r.Partition, HighWatermark: r.Offset + 1}
				order = append(order, r.Partition)
			}
			fp := parts[r.Partition]
			fp.Records = append(fp.Records, r)
			fp.HighWatermark = r.Offset + 1
		}
		var fps []kgo.FetchPartition
		for _, p := range order {
			fps = append(fps, *parts[p])
		}
		return kgo.Fetches{{Topics: []kgo.FetchTopic{{Partitions: fps}}}}
	}

	m := newMerger(wait, 0, 1)
	now := time.Unix(1000, 0)
	m.add(fetch(rec(0, 0, 0), rec(0, 1, 2)), now)
	if out := m.drain(now.Add(100 * time.Millisecond)); len(out) != 0 {
		t.Fatalf("partition 1 never fetched: %d records went on before the wait", len(out))
	}
	m.add(fetch(rec(1, 0, 1), rec(1, 1, 3)), now.Add(200*time.Millisecond))
	out := m.drain(now.Add(200 * time.Millisecond))
	var got []int
	for _, r := range out {
		got = append(got, int(r.Timestamp.Sub(t0)/time.Second))
	}
	// 0, 1, 2 go on; 3 (partition 1's last) waits for partition 0's next.
	if len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 2 {
		t.Fatalf("merged %v, want [0 1 2] in timestamp order", got)
	}
	if out := m.drain(now.Add(200*time.Millisecond + wait - time.Millisecond)); len(out) != 0 {
		t.Fatalf("partition 0 empty: a record went on before the wait ended")
	}
	out = m.drain(now.Add(200*time.Millisecond + wait))
	if len(out) != 1 || out[0].Partition != 1 || out[0].Offset != 1 {
		t.Fatalf("after the wait: %d records, want partition 1's last", len(out))
	}
	// A partition that stays empty (2, never fetched) costs each record
	// the wait, once.
	m = newMerger(wait, 0, 1, 2)
	m.add(fetch(rec(0, 0, 0), rec(1, 0, 0)), now)
	if out := m.drain(now.Add(wait - time.Millisecond)); len(out) != 0 {
		t.Fatalf("partition 2 empty: records went on before the wait")
	}
	if out := m.drain(now.Add(wait)); len(out) != 2 {
		t.Fatalf("after the wait: %d records, want 2", len(out))
	}
}
