package main

// Standby replicas on the real broker (issue 17): two workers with
// standby_replicas: 1 keep a warm copy of each other's state; one is
// killed with SIGKILL, and its partitions resume on the other after a
// restore of only the changelog records the copy had not read yet. The
// same run without standbys restores the moved partitions' whole
// changelogs (the contrast). Results are checked against plain loops over
// the input.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

const (
	sbParts = 4
	sbUsers = 20_000 // 5000 keys per partition, each updated twice
	sbHour  = int64(3_600_000)
)

// sbT0 is the start of the window every user's records fall in.
var sbT0 = int64(1_700_000_000_000) / sbHour * sbHour

func sbSpec(t *testing.T, app, in, out, processing string, standbys int) string {
	y := fmt.Sprintf(`app: %s
source:
  topics: [%s]
  keyed_by_group_key: true
time: {field: ts}
key: [user]
window: {type: tumbling, size: 1h}
aggregates:
  - {name: n, op: count}
  - {name: s, op: sum, field: v}
output: {topic: %s}
processing: %s
commit_interval: 200ms
idle_timeout: 1h
standby_replicas: %d
`, app, in, out, processing, standbys)
	p := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sbRecord is user u's record of a phase (0 or 1): in partition u%sbParts,
// at increasing event times within the window [sbT0, sbT0+1h), value
// (u*7+phase)%101.
func sbRecord(topic string, u, phase int) *kgo.Record {
	user := fmt.Sprintf("u%05d", u)
	key, _ := json.Marshal([]string{user})
	ts := sbT0 + int64(phase)*sbHour/2 + int64(u)
	v, _ := json.Marshal(map[string]any{"user": user, "ts": ts, "v": (u*7 + phase) % 101})
	return &kgo.Record{Topic: topic, Partition: int32(u % sbParts), Key: key, Value: v}
}

// sbStartWorker starts `eddy run` with a static instance id.
func sbStartWorker(t *testing.T, spec, brokers, id string) *worker {
	return sbStartWorkerWith(t, spec, brokers, id, "6s")
}

func sbStartWorkerWith(t *testing.T, spec, brokers, id, session string) *worker {
	return startEddy(t, nil, "run", "-f", spec, "--brokers", brokers, "--state-dir", t.TempDir(),
		"--http-addr", "127.0.0.1:0", "--session-timeout", session, "--log-level", "info", "--instance-id", id)
}

// sbWaitIdle waits until the group has committed the end of every input
// partition (past an open transaction's records only once it ended).
func sbWaitIdle(t *testing.T, timeout time.Duration, brokers []string, group, topic string, ws ...*worker) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	waitFor(t, timeout, "the group to process its input", func() (bool, string) {
		for _, w := range ws {
			select {
			case err := <-w.done:
				w.exited = true
				t.Fatalf("eddy exited early: %v", err)
			default:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ends, err1 := adm.ListEndOffsets(ctx, topic)
		offs, err2 := adm.FetchOffsets(ctx, group)
		if err := errors.Join(err1, err2); err != nil {
			return false, err.Error()
		}
		behind := ""
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := offs.Lookup(o.Topic, o.Partition)
			if o.Offset > 0 && (!ok || c.At < o.Offset && hasRecords(t, brokers, o.Topic, o.Partition, c.At, o.Offset)) {
				behind += fmt.Sprintf("%d: committed %d of %d; ", o.Partition, c.At, o.Offset)
			}
		})
		return behind == "", behind
	})
}

// sbOwners returns the aggregation partitions of each member of the group
// by instance id, once the group is stable with the members ids (default
// w0 and w1), each owning partitions.
func sbOwners(t *testing.T, brokers []string, group, topic string, ids ...string) map[string][]int32 {
	t.Helper()
	if len(ids) == 0 {
		ids = []string{"w0", "w1"}
	}
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	var owners map[string][]int32
	waitFor(t, 60*time.Second, "members owning partitions", func() (bool, string) {
		gs, err := adm.DescribeGroups(context.Background(), group)
		if err != nil {
			return false, err.Error()
		}
		g := gs[group]
		owners = map[string][]int32{}
		for _, m := range g.Members {
			id := m.MemberID
			if m.InstanceID != nil {
				id = *m.InstanceID
			}
			owners[id] = nil
			if ca, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range ca.Topics {
					if tp.Topic == topic {
						owners[id] = append(owners[id], tp.Partitions...)
					}
				}
			}
		}
		ok := g.State == "Stable" && len(owners) == len(ids)
		for _, id := range ids {
			ok = ok && len(owners[id]) > 0
		}
		return ok, fmt.Sprintf("state %s, owners %v", g.State, owners)
	})
	return owners
}

var sbRestoredRE = regexp.MustCompile(`msg="partition restored" .*?partition=(\d+) .*?records=(\d+) from_scratch=(\w+)`)

// testStandbyFailover runs two workers on sbUsers users' records, kills
// the one with instance id w0 and checks the other's restore of w0's
// partitions and the final results.
func testStandbyFailover(t *testing.T, processing string, standbys int) {
	brokers := kafkatest.Real(t)
	in, out, app := kafkatest.Name(t, "in"), kafkatest.Name(t, "out"), kafkatest.Name(t, "app")
	kafkatest.CreateTopic(t, brokers, in, sbParts)
	spec := sbSpec(t, app, in, out, processing, standbys)
	list := strings.Join(brokers, ",")

	var phase0, phase1 []*kgo.Record
	for u := range sbUsers {
		phase0 = append(phase0, sbRecord(in, u, 0))
		phase1 = append(phase1, sbRecord(in, u, 1))
	}
	produceSync(t, brokers, phase0)
	w0 := sbStartWorker(t, spec, list, "w0")
	w1 := sbStartWorker(t, spec, list, "w1")
	sbOwners(t, brokers, app, in) // both in the group
	sbWaitIdle(t, 120*time.Second, brokers, app, in, w0, w1)
	produceSync(t, brokers, phase1)
	sbWaitIdle(t, 120*time.Second, brokers, app, in, w0, w1)
	owners := sbOwners(t, brokers, app, in)
	moved := owners["w0"]
	if standbys > 0 {
		// w1 keeps w0's partitions warm, and has caught up with them.
		addr := w1.metricsAddr(t)
		waitFor(t, 60*time.Second, "w1's standbys to catch up", func() (bool, string) {
			parts := metric(t, addr, "eddy_standby_partitions")
			lag := metric(t, addr, "eddy_standby_lag_records")
			// Caught up: at most the transaction marker ending each
			// changelog partition.
			return parts == float64(len(moved)) && lag <= float64(len(moved)), fmt.Sprintf("standby partitions %v (want %d), lag %v", parts, len(moved), lag)
		})
		for _, p := range moved {
			if !strings.Contains(w1.logs(), fmt.Sprintf(`msg="standby started: keeping a warm copy of a partition this worker does not own" app=%s partition=%d `, app, p)) {
				t.Errorf("w1 logged no standby start for partition %d", p)
			}
		}
	}

	before := len(w1.logs())
	killed := time.Now()
	if err := w0.stop(syscall.SIGKILL); err == nil {
		t.Fatal("SIGKILL: the worker exited cleanly?")
	}
	// Close the window: one record per partition an hour and a half
	// later, after the kill (so the results come from w1).
	var flush []*kgo.Record
	for p := range int32(sbParts) {
		key, _ := json.Marshal([]string{fmt.Sprintf("flush%d", p)})
		v, _ := json.Marshal(map[string]any{"user": fmt.Sprintf("flush%d", p), "ts": sbT0 + 3*sbHour/2 + int64(p), "v": 0})
		flush = append(flush, &kgo.Record{Topic: in, Partition: p, Key: key, Value: v})
	}
	produceSync(t, brokers, flush)
	var resumed time.Duration
	waitFor(t, 120*time.Second, "w1 to restore w0's partitions", func() (bool, string) {
		after := w1.logs()[before:]
		if strings.Contains(after, `msg="state restored; processing"`) {
			resumed = time.Since(killed)
			return true, ""
		}
		return false, after
	})

	// What w1 restored of each moved partition, against the keys in it
	// (every key has at least one row in the changelog).
	restored := map[int32]int64{}
	for _, m := range sbRestoredRE.FindAllStringSubmatch(w1.logs()[before:], -1) {
		p, _ := strconv.Atoi(m[1])
		n, _ := strconv.ParseInt(m[2], 10, 64)
		restored[int32(p)] += n
		if standbys > 0 && m[3] != "false" {
			t.Errorf("partition %d restored from scratch on the standby's worker: %s", p, m[0])
		}
	}
	keysPer := int64(sbUsers / sbParts)
	for _, p := range moved {
		n, ok := restored[p]
		switch {
		case !ok:
			t.Errorf("partition %d of the killed worker: no restore logged by w1", p)
		case standbys > 0 && n > keysPer/10:
			t.Errorf("partition %d: restored %d changelog records on the standby's worker, want a catch-up (<= %d; the partition holds %d keys)", p, n, keysPer/10, keysPer)
		case standbys == 0 && n < keysPer:
			t.Errorf("partition %d: restored %d changelog records without a standby, want the whole changelog (>= %d keys)", p, n, keysPer)
		}
	}
	t.Logf("standby_replicas %d, %s: killed w0 (partitions %v); w1 restored %v records and processed again %s after the kill (session timeout 6s)",
		standbys, processing, moved, restored, resumed.Round(time.Millisecond))

	// Results: every user's window counts both records, with their sum.
	sbWaitIdle(t, 120*time.Second, brokers, app, in, w1)
	type res struct {
		Key   map[string]string `json:"key"`
		Start time.Time         `json:"window_start"`
		N     float64           `json:"n"`
		S     float64           `json:"s"`
	}
	got := map[string][]res{}
	for _, r := range kafkatest.ReadAll(t, brokers, out, true) {
		var x res
		if err := json.Unmarshal(r.Value, &x); err != nil {
			t.Fatalf("output %s: %v", r.Value, err)
		}
		if x.Start.UnixMilli() == sbT0 {
			got[x.Key["user"]] = append(got[x.Key["user"]], x)
		}
	}
	bad := 0
	for u := range sbUsers {
		user := fmt.Sprintf("u%05d", u)
		wantS := float64((u*7)%101 + (u*7+1)%101)
		rs := got[user]
		switch {
		case len(rs) == 0:
			t.Errorf("user %s: no result", user)
		case processing == "exactly_once" && len(rs) != 1:
			t.Errorf("user %s: %d results under exactly-once", user, len(rs))
		default:
			for _, r := range rs {
				if r.N != 2 || r.S != wantS {
					t.Errorf("user %s: n=%v s=%v, want 2 %v", user, r.N, r.S, wantS)
				}
			}
		}
		if t.Failed() {
			if bad++; bad > 20 {
				t.Fatal("too many wrong results")
			}
		}
	}
	if len(got) != sbUsers {
		t.Errorf("%d users with a result, want %d", len(got), sbUsers)
	}
	_ = w1.stop(syscall.SIGTERM)
}

// TestKafkaStandbyFailover: with a standby the killed worker's partitions
// resume from warm state, under both guarantees.
func TestKafkaStandbyFailover(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"exactly_once", "at_least_once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testStandbyFailover(t, mode, 1)
		})
	}
}

// TestKafkaNoStandbyRestoresWhole is the contrast: without standbys the
// same failover restores the moved partitions' whole changelogs.
func TestKafkaNoStandbyRestoresWhole(t *testing.T) {
	t.Parallel()
	testStandbyFailover(t, "exactly_once", 0)
}

// TestKafkaStandbyPreferred: three workers, three partitions, one standby
// each (the ring w0 -> w1 -> w2 -> w0: w2 keeps w1's partition warm). When
// w1 is killed, the group's assignment gives its partition to w2, which
// restores only a catch-up; results stay exact. (franz-go's sticky plan
// alone gives it to w0, the first member, on a tie.)
func TestKafkaStandbyPreferred(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	const parts, users = 3, 6000
	in, out, app := kafkatest.Name(t, "in"), kafkatest.Name(t, "out"), kafkatest.Name(t, "app")
	kafkatest.CreateTopic(t, brokers, in, parts)
	spec := sbSpec(t, app, in, out, "exactly_once", 1)
	list := strings.Join(brokers, ",")
	record := func(u, phase int) *kgo.Record {
		r := sbRecord(in, u, phase)
		r.Partition = int32(u % parts)
		return r
	}
	var recs []*kgo.Record
	for u := range users {
		recs = append(recs, record(u, 0), record(u, 1))
	}
	produceSync(t, brokers, recs)
	ids := []string{"w0", "w1", "w2"}
	ws := map[string]*worker{}
	for _, id := range ids {
		ws[id] = sbStartWorker(t, spec, list, id)
	}
	waitFor(t, 90*time.Second, "one partition per worker", func() (bool, string) {
		owners := sbOwners(t, brokers, app, in, ids...)
		return len(owners["w0"]) == 1 && len(owners["w1"]) == 1 && len(owners["w2"]) == 1, fmt.Sprint(owners)
	})
	sbWaitIdle(t, 120*time.Second, brokers, app, in, ws["w0"], ws["w1"], ws["w2"])
	moved := sbOwners(t, brokers, app, in, ids...)["w1"][0]
	addr := ws["w2"].metricsAddr(t)
	waitFor(t, 60*time.Second, "w2's standby to catch up", func() (bool, string) {
		n, lag := metric(t, addr, "eddy_standby_partitions"), metric(t, addr, "eddy_standby_lag_records")
		return n == 1 && lag <= 1, fmt.Sprintf("standby partitions %v, lag %v", n, lag)
	})
	before := map[string]int{"w0": len(ws["w0"].logs()), "w2": len(ws["w2"].logs())}
	if err := ws["w1"].stop(syscall.SIGKILL); err == nil {
		t.Fatal("SIGKILL: the worker exited cleanly?")
	}
	var flush []*kgo.Record
	for p := range int32(parts) {
		key, _ := json.Marshal([]string{fmt.Sprintf("flush%d", p)})
		v, _ := json.Marshal(map[string]any{"user": fmt.Sprintf("flush%d", p), "ts": sbT0 + 3*sbHour/2 + int64(p), "v": 0})
		flush = append(flush, &kgo.Record{Topic: in, Partition: p, Key: key, Value: v})
	}
	produceSync(t, brokers, flush)
	sbWaitIdle(t, 120*time.Second, brokers, app, in, ws["w0"], ws["w2"])
	restoredBy := map[string]string{}
	for _, id := range []string{"w0", "w2"} {
		for _, m := range sbRestoredRE.FindAllStringSubmatch(ws[id].logs()[before[id]:], -1) {
			if m[1] == strconv.Itoa(int(moved)) {
				restoredBy[id] = m[0]
			}
		}
	}
	t.Logf("w1's partition %d restored: %v", moved, restoredBy)
	if restoredBy["w2"] == "" || restoredBy["w0"] != "" {
		t.Fatalf("w1's partition %d should move to w2, its standby: restores %v", moved, restoredBy)
	}
	m := sbRestoredRE.FindStringSubmatch(restoredBy["w2"])
	if n, _ := strconv.Atoi(m[2]); n > users/parts/10 || m[3] != "false" {
		t.Errorf("w2 restored w1's partition with %s records (from scratch %s), want a catch-up of at most %d", m[2], m[3], users/parts/10)
	}
	if !strings.Contains(ws["w0"].logs()+ws["w2"].logs(), "orphaned partitions given to the workers holding their standby copies") {
		t.Log("the sticky plan already gave the partition to its standby (no move needed)")
	}
	got := map[string]int{}
	for _, r := range kafkatest.ReadAll(t, brokers, out, true) {
		var x struct {
			Key   map[string]string `json:"key"`
			Start time.Time         `json:"window_start"`
			N     float64           `json:"n"`
			S     float64           `json:"s"`
		}
		if err := json.Unmarshal(r.Value, &x); err != nil {
			t.Fatal(err)
		}
		u, err := strconv.Atoi(strings.TrimPrefix(x.Key["user"], "u"))
		if x.Start.UnixMilli() != sbT0 || err != nil {
			continue
		}
		got[x.Key["user"]]++
		if want := float64((u*7)%101 + (u*7+1)%101); x.N != 2 || x.S != want {
			t.Errorf("user %s: n=%v s=%v, want 2 %v", x.Key["user"], x.N, x.S, want)
		}
	}
	for u := range users {
		if n := got[fmt.Sprintf("u%05d", u)]; n != 1 {
			t.Errorf("user u%05d: %d results under exactly-once, want 1", u, n)
		}
	}
	for _, id := range []string{"w0", "w2"} {
		_ = ws[id].stop(syscall.SIGTERM)
	}
}
