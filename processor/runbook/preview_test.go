package runbook

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// nopEngine is an engine that emits nothing: these tests are about the
// preview's life, not its results (same_test.go runs the real engine).
type nopEngine struct{ closed *atomic.Int32 }

func (nopEngine) Feed(context.Context, *kgo.Record, time.Time) error { return nil }
func (nopEngine) Advance(time.Time) error                            { return nil }
func (nopEngine) Drain() []*kgo.Record                               { return nil }
func (e nopEngine) Close() error                                     { e.closed.Add(1); return nil }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const testBlock = "source: {topics: [t]}\nkey: [k]\nwindow: {type: tumbling, size: 10s}\naggregates: [{name: n, op: count}]\n---\ndisplay: chart\n"

// A preview nobody watches stops after IdleStop (its engine closed, its
// source left), and a view starts it again; an edited block replaces it.
func TestPreviewIdleStopAndRestart(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	var closed atomic.Int32
	hub := NewHub(HubConfig{Brokers: []string{"127.0.0.1:1"}}) // never reached: nothing to read
	defer hub.Close()
	m := NewManager(ManagerConfig{Hub: hub, Now: clock.Now, IdleStop: time.Minute, Tick: 5 * time.Millisecond,
		NewEngine: func(context.Context, *topology.Spec) (Engine, error) { return nopEngine{&closed}, nil }})
	defer m.Close()
	b := ParseBlock(0, 1, testBlock, clock.Now())
	p, release, err := m.Open("doc#0", b)
	if err != nil {
		t.Fatal(err)
	}
	// Watched: it runs however long.
	clock.Add(10 * time.Minute)
	time.Sleep(50 * time.Millisecond)
	if m.Running() != 1 {
		t.Fatal("a watched preview stopped")
	}
	release()
	clock.Add(59 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if m.Running() != 1 {
		t.Fatal("stopped before IdleStop")
	}
	clock.Add(2 * time.Second)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("an unwatched preview did not stop after IdleStop")
	}
	waitCond(t, func() bool { return m.Running() == 0 && closed.Load() == 1 })
	if s := p.Snapshot(); s.Stopped == "" {
		t.Error("the stopped preview does not say why")
	}
	// Viewed again: a new preview.
	p2, release2, err := m.Open("doc#0", b)
	if err != nil || p2 == p {
		t.Fatalf("restart: %v (same preview: %v)", err, p2 == p)
	}
	// The block edited while another page watches the old text: both run.
	b2 := ParseBlock(0, 1, testBlock+"top: 3\n", clock.Now())
	p3, release3, err := m.Open("doc#0", b2)
	if err != nil || p3 == p2 || m.Running() != 2 {
		t.Fatalf("edited beside a watched one: %v (same preview: %v, running %d)", err, p3 == p2, m.Running())
	}
	release3()
	// Edited with nobody watching the old text: the old preview is replaced.
	release2()
	b4 := ParseBlock(0, 1, testBlock+"top: 4\n", clock.Now())
	p4, release4, err := m.Open("doc#0", b4)
	if err != nil || p4 == p2 {
		t.Fatalf("edited: %v (same preview: %v)", err, p4 == p2)
	}
	<-p2.Done()
	release4()
	waitCond(t, func() bool { return m.Running() == 2 }) // p3 (unwatched, not yet idle) and p4
}

// Open refuses past MaxPreviews and a block with errors.
func TestPreviewBounds(t *testing.T) {
	var closed atomic.Int32
	hub := NewHub(HubConfig{Brokers: []string{"127.0.0.1:1"}})
	defer hub.Close()
	m := NewManager(ManagerConfig{Hub: hub, MaxPreviews: 2,
		NewEngine: func(context.Context, *topology.Spec) (Engine, error) { return nopEngine{&closed}, nil }})
	defer m.Close()
	b := ParseBlock(0, 1, testBlock, time.Now())
	for i, id := range []string{"a", "b"} {
		if _, _, err := m.Open(id, b); err != nil {
			t.Fatalf("preview %d: %v", i, err)
		}
	}
	if _, _, err := m.Open("c", b); err != ErrTooManyPreviews {
		t.Fatalf("third preview: %v, want ErrTooManyPreviews", err)
	}
	if _, _, err := m.Open("a", ParseBlock(0, 1, "key: [\n", time.Now())); err == nil {
		t.Fatal("a block with errors was run")
	}
	// Two previews of one topic share one reader.
	if n := m.previews["a"].sourceStats().Readers; n != 2 {
		t.Fatalf("readers of topic t: %d, want 2 sharing one read", n)
	}
}

func waitCond(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
