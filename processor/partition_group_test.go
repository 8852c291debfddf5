package processor

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddy-streams/eddy/state"
)

func srcItems(topic string, part int32, epoch int32, offsets []int64, ts []int64) []srcItem {
	out := make([]srcItem, len(offsets))
	for i, o := range offsets {
		out[i] = srcItem{rec: &kgo.Record{Topic: topic, Partition: part, Offset: o, LeaderEpoch: epoch}, ev: event{ts: ts[i]}}
	}
	return out
}

// TestPartitionGroupHoldsAcrossCommit: records the partition group keeps
// back for event-time order are not forwarded by a commit; the commit
// names, for their partition, the offset of the first of them, and other
// partitions commit their polled position.
func TestPartitionGroupHoldsAcrossCommit(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newPartitionGroup(time.Second)
	a := state.SourcePartition{Topic: "in", Partition: 0}
	b := state.SourcePartition{Topic: "in", Partition: 1}
	// Partition 0 fetched to its end (3 records); partition 1 fetched 1 of
	// its 4 records and is lagging.
	g.add(a, srcItems("in", 0, 2, []int64{10, 11, 12}, []int64{100, 300, 500}), 13, now)
	g.add(b, srcItems("in", 1, 5, []int64{40}, []int64{200}), 44, now)

	var fwd []int64
	collect := func(it srcItem) error { fwd = append(fwd, it.ev.ts); return nil }
	if err := g.drain(now, collect); err != nil {
		t.Fatal(err)
	}
	// 100 (p0), 200 (p1), then p1 is empty and lagging: wait.
	if len(fwd) != 2 || fwd[0] != 100 || fwd[1] != 200 {
		t.Fatalf("forwarded %v, want [100 200]", fwd)
	}
	held := g.held()
	if len(held) != 1 || held[a] != (kgo.EpochOffset{Epoch: 2, Offset: 11}) {
		t.Fatalf("held = %v, want in/0 at 11 (epoch 2)", held)
	}

	// The session's offset commit names the polled positions; holdBack
	// lowers partition 0 to its first buffered record and leaves the
	// others (partition 1, and the aggregation input) alone.
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	for _, tp := range []struct {
		topic string
		parts map[int32]int64
	}{{"in", map[int32]int64{0: 13, 1: 41}}, {"app-repartition", map[int32]int64{0: 7}}} {
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = tp.topic
		for p, o := range tp.parts {
			rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, o, 9
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	holdBack(req, held)
	got := map[string]int64{}
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			got[rt.Topic+"/"+strconv.Itoa(int(rp.Partition))] = rp.Offset
			if rt.Topic == "in" && rp.Partition == 0 && rp.LeaderEpoch != 2 {
				t.Errorf("in/0 committed with leader epoch %d, want the buffered record's 2", rp.LeaderEpoch)
			}
		}
	}
	want := map[string]int64{"in/0": 11, "in/1": 41, "app-repartition/0": 7}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("commit of %s at %d, want %d", k, got[k], w)
		}
	}

	// After the commit the records are still buffered, in order: the
	// lagging partition's next records come and everything drains in
	// event-time order.
	g.add(b, srcItems("in", 1, 5, []int64{41, 42, 43}, []int64{250, 400, 600}), 44, now)
	fwd = nil
	if err := g.drain(now, collect); err != nil {
		t.Fatal(err)
	}
	if want := []int64{250, 300, 400, 500, 600}; !slices.Equal(fwd, want) {
		t.Fatalf("forwarded %v, want %v", fwd, want)
	}
	if h := g.held(); len(h) != 0 {
		t.Errorf("held %v after draining everything", h)
	}
}

// TestPartitionGroupRewind: after an aborted transaction the consumer goes
// back to the committed offsets; the buffers are dropped and each
// partition is positioned there, still lagging behind its high watermark,
// so drain waits for its records to be read again.
func TestPartitionGroupRewind(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newPartitionGroup(time.Second)
	a := state.SourcePartition{Topic: "in", Partition: 0}
	b := state.SourcePartition{Topic: "in", Partition: 1}
	g.add(a, srcItems("in", 0, 0, []int64{5, 6}, []int64{100, 200}), 7, now)
	g.add(b, srcItems("in", 1, 0, []int64{8}, []int64{150}), 9, now)
	// Partition 1 was read to its end, partition 0 to its end too.
	g.rewind(map[string]map[int32]kgo.EpochOffset{"in": {1: {Epoch: -1, Offset: 3}}}, now)
	if h := g.held(); len(h) != 0 {
		t.Fatalf("held %v after rewind", h)
	}
	if q := g.queues[a]; q.next != 5 || !q.lagging() {
		t.Errorf("in/0 after rewind: next %d lagging %v, want 5 (its first buffered record) and lagging", q.next, q.lagging())
	}
	if q := g.queues[b]; q.next != 3 || !q.lagging() {
		t.Errorf("in/1 after rewind: next %d lagging %v, want 3 (committed) and lagging", q.next, q.lagging())
	}
	// Partition 0 is read again first: partition 1's gap holds it back.
	g.add(a, srcItems("in", 0, 0, []int64{5, 6}, []int64{100, 200}), 7, now)
	var fwd []int64
	if err := g.drain(now, func(it srcItem) error { fwd = append(fwd, it.ev.ts); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(fwd) != 0 {
		t.Errorf("forwarded %v while in/1 is being read again", fwd)
	}
}

// TestPartitionGroupWaitStartsAtDrain: the wait for a lagging partition
// counts from the first drain that finds it empty, not from its
// assignment (restoring state can take longer than maxWait), and starts
// again after a full poll, which may have left its records in the client.
func TestPartitionGroupWaitStartsAtDrain(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := newPartitionGroup(time.Second)
	a := state.SourcePartition{Topic: "in", Partition: 0}
	b := state.SourcePartition{Topic: "in", Partition: 1}
	g.known(a, 0, 3, t0)
	g.known(b, 0, 3, t0)
	var fwd []int64
	collect := func(it srcItem) error { fwd = append(fwd, it.ev.ts); return nil }

	// 5s after the assignment, the first poll brings only partition 0.
	now := t0.Add(5 * time.Second)
	g.polled(false)
	g.add(a, srcItems("in", 0, 0, []int64{0, 1, 2}, []int64{100, 200, 300}), 3, now)
	if err := g.drain(now, collect); err != nil {
		t.Fatal(err)
	}
	if len(fwd) != 0 {
		t.Fatalf("forwarded %v without waiting for in/1", fwd)
	}
	// A full poll later (still nothing of in/1) the wait starts again.
	now = now.Add(900 * time.Millisecond)
	g.polled(true)
	if err := g.drain(now.Add(900*time.Millisecond), collect); err != nil {
		t.Fatal(err)
	}
	if len(fwd) != 0 {
		t.Fatalf("forwarded %v 1.8s after the wait began, with a full poll in between", fwd)
	}
	// Then in/1's records come, and everything goes in order.
	g.add(b, srcItems("in", 1, 0, []int64{0, 1, 2}, []int64{150, 250, 350}), 3, now)
	if err := g.drain(now, collect); err != nil {
		t.Fatal(err)
	}
	if want := []int64{100, 150, 200, 250, 300, 350}; !slices.Equal(fwd, want) {
		t.Fatalf("forwarded %v, want %v", fwd, want)
	}

	// A partition that never comes is waited for maxWait, then skipped.
	g2 := newPartitionGroup(time.Second)
	g2.known(b, 0, 3, t0)
	g2.add(a, srcItems("in", 0, 0, []int64{0}, []int64{100}), 1, t0)
	fwd = nil
	_ = g2.drain(t0, collect)
	_ = g2.drain(t0.Add(999*time.Millisecond), collect)
	if len(fwd) != 0 {
		t.Fatalf("forwarded %v before maxWait", fwd)
	}
	_ = g2.drain(t0.Add(time.Second), collect)
	if !slices.Equal(fwd, []int64{100}) {
		t.Fatalf("forwarded %v after maxWait, want [100]", fwd)
	}
}
