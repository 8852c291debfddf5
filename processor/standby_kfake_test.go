package processor

// Standby replicas end to end in process, on kfake: two Apps keep warm
// copies of each other's partitions; when one stops, the other restores
// the partitions it gets from their warm copies, reading no more than a
// catch-up. (The real-broker test with SIGKILL is cmd/eddy/standby_test.go.)

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// lockedBuf is a log sink an App and the test share.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func gaugeValue(t *testing.T, g interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func TestStandbyKfakeHandOver(t *testing.T) {
	const parts, users = 4, 4000
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	spec, err := topology.Parse([]byte(`app: sbkfake
source: {topics: [in], keyed_by_group_key: true}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 1h}
aggregates: [{name: n, op: count}]
output: {topic: out}
commit_interval: 100ms
idle_timeout: 1h
standby_replicas: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for u := range users {
		user := fmt.Sprintf("u%04d", u)
		key, _ := json.Marshal([]string{user})
		v, _ := json.Marshal(map[string]any{"user": user, "ts": 1_000 + u})
		recs = append(recs, &kgo.Record{Topic: "in", Partition: int32(u % parts), Key: key, Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	type run struct {
		app    *App
		log    *lockedBuf
		cancel context.CancelFunc
		done   chan error
	}
	start := func(id string) *run {
		r := &run{log: &lockedBuf{}, done: make(chan error, 1)}
		r.app, err = New(Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir(), InstanceID: id, SessionTimeout: 6 * time.Second,
			Parallelism: 1, Logger: slog.New(slog.NewTextHandler(r.log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		var ctx context.Context
		ctx, r.cancel = context.WithCancel(context.Background())
		go func() { r.done <- r.app.Run(ctx) }()
		return r
	}
	a, b := start("a"), start("b")
	defer func() {
		for _, r := range []*run{a, b} {
			if r.cancel != nil {
				r.cancel()
				<-r.done
			}
		}
	}()
	wait := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			ok, last := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 60s; last seen: %s\nlog a:\n%s\nlog b:\n%s", what, last, a.log, b.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	adm := kadm.NewClient(cl)
	wait("the input processed", func() (bool, string) {
		offs, err := adm.FetchOffsets(context.Background(), "sbkfake")
		if err != nil {
			return false, err.Error()
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum == users, fmt.Sprintf("committed %d of %d", sum, users)
	})
	// Each keeps the other's partitions warm (two members, one standby).
	var aParts []int32
	wait("both standbys warm", func() (bool, string) {
		aParts = nil
		a.app.mu.Lock()
		for k := range a.app.tasks {
			aParts = append(aParts, k.p)
		}
		a.app.mu.Unlock()
		na, nb := gaugeValue(t, a.app.m.standbyParts), gaugeValue(t, b.app.m.standbyParts)
		started := 0
		for _, p := range aParts {
			if strings.Contains(b.log.String(), fmt.Sprintf(`msg="standby started: keeping a warm copy of a partition this worker does not own" app=sbkfake partition=%d `, p)) {
				started++
			}
		}
		return a.app.Ready() && b.app.Ready() && len(aParts) > 0 && na+nb == parts && started == len(aParts),
			fmt.Sprintf("a owns %v; standby partitions a %v b %v; b started %d of them", aParts, na, nb, started)
	})

	// a stops (a clean leave): b gets a's partitions and restores them
	// from its warm copies.
	before := len(b.log.String())
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("a: %v", err)
	}
	a.cancel = nil
	re := regexp.MustCompile(`msg="partition restored" .*?partition=(\d+) .*?records=(\d+) from_scratch=(\w+)`)
	wait("b to restore a's partitions", func() (bool, string) {
		n := 0
		for _, m := range re.FindAllStringSubmatch(b.log.String()[before:], -1) {
			p, _ := strconv.Atoi(m[1])
			if slices.Contains(aParts, int32(p)) {
				n++
			}
		}
		return n == len(aParts), b.log.String()[before:]
	})
	defer func() {
		if t.Failed() {
			t.Logf("log b:\n%s", b.log)
		}
	}()
	for _, m := range re.FindAllStringSubmatch(b.log.String()[before:], -1) {
		n, _ := strconv.Atoi(m[2])
		if n > users/parts/10 || m[3] != "false" {
			t.Errorf("partition %s restored %d records (from scratch %s) on the standby's worker, want a catch-up of at most %d", m[1], n, m[3], users/parts/10)
		}
	}
	wait("b to log its standbys' stop", func() (bool, string) {
		return strings.Count(b.log.String()[before:], "standby stopped") >= len(aParts), b.log.String()[before:]
	})
}
