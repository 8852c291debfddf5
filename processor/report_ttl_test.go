package processor

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// TestReportTTLAgainstIdleTimeout: reports of a source partition must
// expire (its owner died) before the partition could count as idle, or a
// dead worker's partitions are left out and the records its successor
// reads again are late. With the defaults they do, under both guarantees;
// a worker whose idle_timeout is too short for that says so at start, and
// one whose settings are fine does not.
func TestReportTTLAgainstIdleTimeout(t *testing.T) {
	for _, mode := range []string{topology.AtLeastOnce, topology.ExactlyOnce} {
		spec := &topology.Spec{Processing: mode}
		spec.SetDefaults()
		if ttl := reportTTL(spec); ttl >= spec.IdleTimeout || reportEvery(spec)*3 > ttl {
			t.Errorf("%s, defaults: reports expire after %s (heartbeat %s), want under the idle timeout %s and at least three heartbeats",
				mode, ttl, reportEvery(spec), spec.IdleTimeout)
		}
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	for _, c := range []struct {
		settings string
		warn     bool
	}{
		{"idle_timeout: 500ms\n", true}, // heartbeats every 200ms at the most: expire after 600ms
		{"idle_timeout: 5s\n", false},
	} {
		spec, err := topology.Parse([]byte(`app: ttl
source: {topics: [in]}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 10s, grace: 0s}
aggregates: [{name: requests, op: count}]
output: {topic: out}
` + c.settings))
		if err != nil {
			t.Fatal(err)
		}
		var logs lockedBuf
		app, err := New(Config{Spec: spec, Brokers: cluster.ListenAddrs(), StateDir: t.TempDir(), Parallelism: 1,
			SessionTimeout: 6 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx) }()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), `msg="topics ready"`) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Fatalf("%s: %v", c.settings, err)
		}
		l := logs.String()
		if !strings.Contains(l, `msg="topics ready"`) {
			t.Fatalf("%s: the worker did not get its topics ready in 30s:\n%s", c.settings, l)
		}
		warned := strings.Contains(l, "level=WARN") && strings.Contains(l, "idle_timeout is too short to tell a dead worker's partitions from idle ones")
		if warned != c.warn {
			t.Errorf("%s: warned %v, want %v:\n%s", strings.TrimSpace(c.settings), warned, c.warn, l)
		}
	}
}

// The source partitions a worker knows (runLag) grow only with partitions
// added to a source topic: a partition listed with an error (its leader
// moving, as in a broker restart) still exists, even at the first listing;
// a topic that failed whole (partition -1) says nothing; other topics are
// not sources.
func TestSourcePartsAdded(t *testing.T) {
	listed := func(parts map[int32]error, topics ...string) kadm.ListedOffsets {
		l := kadm.ListedOffsets{}
		for _, topic := range topics {
			l[topic] = map[int32]kadm.ListedOffset{}
			for p, err := range parts {
				l[topic][p] = kadm.ListedOffset{Topic: topic, Partition: p, Offset: 10, Err: err}
			}
		}
		return l
	}
	leaderMoved := errors.New("NOT_LEADER_OR_FOLLOWER")
	src := []string{"in"}
	s := newSourceParts(nil) // known from the first listing
	if got := s.added(listed(map[int32]error{-1: leaderMoved}, "in"), src); len(got) != 0 {
		t.Fatalf("a topic that failed whole: added %v", got)
	}
	if got := s.added(listed(map[int32]error{0: nil, 1: leaderMoved}, "in", "other"), src); len(got) != 0 {
		t.Fatalf("first listing: added %v, want none", got)
	}
	if got := s.added(listed(map[int32]error{0: nil, 1: nil}, "in"), src); len(got) != 0 {
		t.Fatalf("partition 1 listed with an error first, then without: added %v, want none", got)
	}
	got := s.added(listed(map[int32]error{0: nil, 1: nil, 2: leaderMoved, 3: nil}, "in", "other"), src)
	if want := []state.SourcePartition{{Topic: "in", Partition: 2}, {Topic: "in", Partition: 3}}; !slices.Equal(got, want) {
		t.Fatalf("added %v, want %v", got, want)
	}
	s = newSourceParts([]state.SourcePartition{{Topic: "in", Partition: 0}, {Topic: "in", Partition: 1}})
	if got := s.added(listed(map[int32]error{0: nil, 1: nil, 2: nil}, "in"), src); !slices.Equal(got, []state.SourcePartition{{Topic: "in", Partition: 2}}) {
		t.Fatalf("known at start: added %v, want in/2", got)
	}
}
