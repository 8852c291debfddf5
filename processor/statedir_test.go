package processor

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/state/changelog"
	"github.com/eddy-streams/eddy/topology"
)

// restoredBehind: a committed offset past the restored position is
// "behind" only when a committed data record lies between them, not when
// only transaction markers or aborted records do, and never when the
// restored state names no position (after eddy reset).
func TestRestoredBehind(t *testing.T) {
	brokers := kafkatest.Kfake(t)
	kafkatest.CreateTopic(t, brokers, "in", 1)
	ctx := context.Background()
	txn := kafkatest.Client(t, brokers, kgo.TransactionalID("producer"), kgo.DefaultProduceTopic("in"))
	// offsets returns the offsets of the records of one transaction.
	write := func(commit kgo.TransactionEndTry, values ...string) []int64 {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var offs []int64
		for _, v := range values {
			r, err := txn.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).First()
			if err != nil {
				t.Fatal(err)
			}
			offs = append(offs, r.Offset)
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
		return offs
	}
	first := write(kgo.TryCommit, "a", "b", "c") // then a commit marker
	second := write(kgo.TryCommit, "d")          // then a commit marker
	aborted := write(kgo.TryAbort, "x")          // then an abort marker
	end := aborted[0] + 2

	spec, err := topology.Parse([]byte(`app: a
source: {topics: [in], keyed_by_group_key: true}
key: [k]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: requests, op: count}
output: {topic: out}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r := changelog.NewRestorer(kafkatest.Client(t, brokers,
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()))

	applied := func(last int64) state.Checkpoint {
		return state.Checkpoint{InputNext: last + 1, Upstream: map[state.SourcePartition]int64{{Topic: "in", Partition: 0}: last}}
	}
	committedAt := func(at int64) kadm.OffsetResponses {
		return kadm.OffsetResponses{"in": {0: {Offset: kadm.Offset{Topic: "in", Partition: 0, At: at}}}}
	}
	cases := []struct {
		name      string
		cp        state.Checkpoint
		committed int64
		behind    bool
	}{
		{"at the committed offset", applied(first[2]), first[2] + 1, false},
		{"only a commit marker between", applied(first[2]), second[0], false},
		{"a committed record between", applied(first[2]), second[0] + 1, true},
		{"a marker, an aborted record and its marker between", applied(second[0]), end, false},
		{"committed below the restored position", applied(second[0]), first[0], false},
		{"no position restored (after a reset)", state.Checkpoint{}, end, false},
	}
	for _, c := range cases {
		why := a.restoredBehind(ctx, r, a.rollups[0], 0, c.cp, committedAt(c.committed))
		if (why != "") != c.behind {
			t.Errorf("%s: restoredBehind = %q, want behind=%v", c.name, why, c.behind)
		}
	}
}

// openState rebuilds a damaged store: the log names the directory, the
// file and Pebble's reason; the directory keeps its lock file and stays
// locked; the new store opens.
func TestOpenStateDamaged(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "app")
	lock, err := state.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	db, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ms, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(ms) != 1 {
		t.Fatalf("manifests: %v", ms)
	}
	if err := os.WriteFile(ms[0], []byte("garbage, not a manifest"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	db, err = openState(slog.New(slog.NewTextHandler(&logs, nil)), dir)
	if err != nil {
		t.Fatalf("openState of a damaged store: %v", err)
	}
	defer db.Close()
	line := logs.String()
	for _, want := range []string{"local state is damaged", "dir=" + dir, "file=" + filepath.Base(ms[0]), "reason="} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, state.LockFileName)); err != nil {
		t.Errorf("lock file after the rebuild: %v", err)
	}
	if l2, err := state.LockDir(dir); !errors.Is(err, state.ErrStateDirLocked) {
		l2.Unlock()
		t.Errorf("directory not locked after the rebuild: %v", err)
	}
}

// An error that is not damage (here: the store held by Pebble's own lock
// in another open) stops openState and leaves the files as they are.
func TestOpenStateNotDamageTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	db, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	before, _ := os.ReadDir(dir)
	var logs bytes.Buffer
	if db2, err := openState(slog.New(slog.NewTextHandler(&logs, nil)), dir); err == nil {
		db2.Close()
		t.Fatal("openState of a store held elsewhere succeeded")
	}
	after, _ := os.ReadDir(dir)
	if len(after) != len(before) || strings.Contains(logs.String(), "damaged") {
		t.Errorf("openState touched a store it could not open: %d files before, %d after; log %q", len(before), len(after), logs.String())
	}
}
