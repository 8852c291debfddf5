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
