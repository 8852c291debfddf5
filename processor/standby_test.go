package processor

// Standby replicas (standby.go): which partitions a worker keeps warm (the
// ring), and the hand-over of a partition from its standby catch-up to its
// restore job (one writer at a time per store). The whole path on a real
// broker is cmd/eddy/standby_test.go.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddy-streams/eddy/topology"
)

func sbKeys(ps ...int32) []taskKey {
	var out []taskKey
	for _, p := range ps {
		out = append(out, taskKey{0, p})
	}
	return out
}

func TestStandbyChoiceRing(t *testing.T) {
	// Members listed out of order: the ring is sorted by id.
	members := []groupMember{
		{id: "w-c", parts: sbKeys(4, 5)},
		{id: "w-a", parts: sbKeys(0, 1)},
		{id: "w-b", parts: sbKeys(2, 3)},
	}
	for _, tc := range []struct {
		self string
		n    int
		want []taskKey
	}{
		{"w-a", 0, nil},
		{"w-a", 1, sbKeys(4, 5)}, // a follows c
		{"w-b", 1, sbKeys(0, 1)}, // b follows a
		{"w-c", 1, sbKeys(2, 3)}, // c follows b
		{"w-a", 2, sbKeys(2, 3, 4, 5)},
		{"w-b", 2, sbKeys(0, 1, 4, 5)},
		{"w-a", 9, sbKeys(2, 3, 4, 5)}, // more replicas than other members: every other member's
		{"w-x", 1, nil},                // not a member
	} {
		got := standbyChoice(members, tc.self, tc.n)
		if !slices.Equal(got, tc.want) {
			t.Errorf("standbyChoice(%s, n=%d) = %v, want %v", tc.self, tc.n, got, tc.want)
		}
	}
}

// TestStandbyChoiceCoverage: with m members and n replicas, every
// partition has min(n, m-1) standbys, none on its owner (counted with
// plain loops over every member's choice).
func TestStandbyChoiceCoverage(t *testing.T) {
	for m := 1; m <= 5; m++ {
		for n := 0; n <= 4; n++ {
			var members []groupMember
			owner := map[taskKey]string{}
			for i := range m {
				id := fmt.Sprintf("m%d", i)
				ps := sbKeys(int32(2*i), int32(2*i+1))
				members = append(members, groupMember{id: id, parts: ps})
				for _, k := range ps {
					owner[k] = id
				}
			}
			copies := map[taskKey]int{}
			for _, me := range members {
				for _, k := range standbyChoice(members, me.id, n) {
					if owner[k] == me.id {
						t.Errorf("m=%d n=%d: %s stands by for its own partition %v", m, n, me.id, k)
					}
					copies[k]++
				}
			}
			for k := range owner {
				if want := min(n, m-1); copies[k] != want {
					t.Errorf("m=%d n=%d: partition %v has %d standbys, want %d", m, n, k, copies[k], want)
				}
			}
		}
	}
}

// A partition both in another member's assignment and in this one's
// (a rebalance under way) is not stood by for.
func TestStandbyChoiceSkipsOwn(t *testing.T) {
	members := []groupMember{{id: "a", parts: sbKeys(0, 1)}, {id: "b", parts: sbKeys(1, 2)}}
	if got, want := standbyChoice(members, "b", 1), sbKeys(0); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestStandbyHandOver: a claim cancels the catch-up under way and its
// channel closes only once the catch-up has stopped writing; a claimed
// partition is not caught up; a released one waits for its last restore
// job.
func TestStandbyHandOver(t *testing.T) {
	s := newStandbySet()
	k := taskKey{0, 3}

	ctx, end, ok := s.begin(context.Background(), k)
	if !ok {
		t.Fatal("begin on an unowned partition: not ok")
	}
	var writing, stopped atomic.Bool
	started := make(chan struct{})
	go func() {
		writing.Store(true)
		close(started)
		<-ctx.Done()
		// The last apply finishes after the cancel: the claim must wait.
		time.Sleep(50 * time.Millisecond)
		writing.Store(false)
		stopped.Store(true)
		end()
	}()
	<-started
	ch := s.claim(k)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("claim: the catch-up was not canceled")
	}
	if !stopped.Load() || writing.Load() {
		t.Fatal("claim's channel closed while the catch-up still wrote the store")
	}
	if !s.isOwned(k) {
		t.Fatal("claimed partition not owned")
	}
	if _, _, ok := s.begin(context.Background(), k); ok {
		t.Fatal("begin on a claimed partition: ok")
	}
	// Claiming a partition nobody catches up: nothing to wait for.
	select {
	case <-s.claim(taskKey{0, 4}):
	default:
		t.Fatal("claim of an idle partition must not wait")
	}

	// Released while its last restore job still runs: not caught up until
	// the job has ended.
	jobDone := make(chan struct{})
	s.release(k, jobDone)
	if _, _, ok := s.begin(context.Background(), k); ok {
		t.Fatal("begin while the partition's last restore job runs: ok")
	}
	close(jobDone)
	_, end, ok = s.begin(context.Background(), k)
	if !ok {
		t.Fatal("begin after the restore job ended: not ok")
	}
	end()
}

// TestPreferWarm: orphans are permuted towards their warm copies, keeping
// every member's count and owned partitions (checked with plain loops).
func TestPreferWarm(t *testing.T) {
	owned := func(_ string, p int32) bool { return p < 4 } // 0-3 still owned; 4 and 5 orphaned
	for _, tc := range []struct {
		name   string
		warm   map[int32][]string
		plan   map[string][]int32
		want   map[string][]int32
		gained int
	}{
		{"swap both", map[int32][]string{4: {"b"}, 5: {"a"}},
			map[string][]int32{"a": {0, 1, 4}, "b": {2, 3, 5}},
			map[string][]int32{"a": {0, 1, 5}, "b": {2, 3, 4}}, 2},
		{"one copy, counts kept", map[int32][]string{4: {"a"}, 5: {"a"}},
			map[string][]int32{"a": {0, 1, 4}, "b": {2, 3, 5}},
			map[string][]int32{"a": {0, 1, 4}, "b": {2, 3, 5}}, 0},
		{"moves to the member with fewer", map[int32][]string{4: {"b"}},
			map[string][]int32{"a": {0, 1, 4}, "b": {2}, "c": {3, 5}},
			map[string][]int32{"a": {0, 1}, "b": {2, 4}, "c": {3, 5}}, 1},
		{"not to a member with as many", map[int32][]string{4: {"c"}},
			map[string][]int32{"a": {0, 4}, "b": {2, 5}, "c": {1, 3}},
			map[string][]int32{"a": {0, 4}, "b": {2, 5}, "c": {1, 3}}, 0},
		{"one gains", map[int32][]string{5: {"a"}},
			map[string][]int32{"a": {0, 1, 4}, "b": {2, 3, 5}},
			map[string][]int32{"a": {0, 1, 5}, "b": {2, 3, 4}}, 1},
		{"no copies", nil,
			map[string][]int32{"a": {0, 1, 4}, "b": {2, 3, 5}},
			map[string][]int32{"a": {0, 1, 4}, "b": {2, 3, 5}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assign := map[string]map[string][]int32{}
			for m, ps := range tc.plan {
				assign[m] = map[string][]int32{"in": slices.Clone(ps)}
			}
			gained := preferWarm(assign, owned, func(_ string, p int32) []string { return tc.warm[p] })
			// Every partition still assigned once, and the counts no
			// less even (the largest count not larger).
			var all []int32
			largest := func(m map[string][]int32) int {
				n := 0
				for _, ps := range m {
					n = max(n, len(ps))
				}
				return n
			}
			got := map[string][]int32{}
			for m := range assign {
				got[m] = assign[m]["in"]
				all = append(all, got[m]...)
			}
			slices.Sort(all)
			var want []int32
			for _, ps := range tc.plan {
				want = append(want, ps...)
			}
			slices.Sort(want)
			if !slices.Equal(all, want) {
				t.Errorf("partitions assigned %v, want each of %v once", all, want)
			}
			if largest(got) > largest(tc.plan) {
				t.Errorf("counts less even: %v from %v", got, tc.plan)
			}
			if gained != tc.gained {
				t.Errorf("gained %d, want %d", gained, tc.gained)
			}
			for m, want := range tc.want {
				got := slices.Clone(assign[m]["in"])
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("member %s: %v, want %v", m, got, want)
				}
				for _, p := range tc.plan[m] {
					if owned("in", p) && !slices.Contains(got, p) {
						t.Errorf("member %s lost its owned partition %d", m, p)
					}
				}
			}
		})
	}
}

// TestPreferWarmPlan: the leader's plan, read from and written back to the
// group protocol's encodings: worker c died owning partition 2, whose copy
// (one standby, ring a, b, c) is on a; the sticky plan gave it to b.
func TestPreferWarmPlan(t *testing.T) {
	spec, err := topology.Parse([]byte(`app: sbplan
source: {topics: [in], keyed_by_group_key: true}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 1m}
aggregates: [{name: n, op: count}]
output: {topic: out}
standby_replicas: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Spec: spec, Brokers: []string{"127.0.0.1:1"}, StateDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	join := func(id string, owned ...int32) kmsg.JoinGroupResponseMember {
		md := kmsg.NewConsumerMemberMetadata()
		md.Version = 1
		md.Topics = []string{"in"}
		md.OwnedPartitions = []kmsg.ConsumerMemberMetadataOwnedPartition{{Topic: "in", Partitions: owned}}
		inst := id
		return kmsg.JoinGroupResponseMember{MemberID: "mid-" + id, InstanceID: &inst, ProtocolMetadata: md.AppendTo(nil)}
	}
	assignment := func(id string, ps ...int32) kmsg.SyncGroupRequestGroupAssignment {
		ca := kmsg.NewConsumerMemberAssignment()
		ca.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "in", Partitions: ps}}
		return kmsg.SyncGroupRequestGroupAssignment{MemberID: "mid-" + id, MemberAssignment: ca.AppendTo(nil)}
	}
	members := []kmsg.JoinGroupResponseMember{join("a", 0), join("b", 1)}
	plan := []kmsg.SyncGroupRequestGroupAssignment{assignment("a", 0), assignment("b", 1, 2)}
	last := []groupMember{{id: "a", parts: sbKeys(0)}, {id: "b", parts: sbKeys(1)}, {id: "c", parts: sbKeys(2)}}
	out, moved := a.preferWarmPlan(plan, members, last)
	if moved != 1 {
		t.Errorf("moved %d, want 1", moved)
	}
	got := map[string][]int32{}
	for _, sa := range out {
		var ca kmsg.ConsumerMemberAssignment
		if err := ca.ReadFrom(sa.MemberAssignment); err != nil {
			t.Fatal(err)
		}
		for _, tp := range ca.Topics {
			got[sa.MemberID] = append(got[sa.MemberID], tp.Partitions...)
		}
	}
	if !slices.Equal(got["mid-a"], []int32{0, 2}) || !slices.Equal(got["mid-b"], []int32{1}) {
		t.Errorf("plan %v, want a [0 2], b [1]", got)
	}
	// Without a membership described, the plan is the sticky one.
	if _, moved := a.preferWarmPlan(plan, members, nil); moved != 0 {
		t.Errorf("no membership known: moved %d", moved)
	}
}

func TestStandbyHeartbeat(t *testing.T) {
	for _, tc := range []struct{ session, want time.Duration }{
		{45 * time.Second, time.Second},
		{6 * time.Second, 600 * time.Millisecond},
		{500 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := standbyHeartbeat(tc.session); got != tc.want {
			t.Errorf("session %s: heartbeat %s, want %s", tc.session, got, tc.want)
		}
	}
}
