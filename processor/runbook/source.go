package runbook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Reading a preview's source. Blocks share a source read: the Hub keeps
// one reader per (topic, start), and every preview of that topic starting
// there gets the same records. A block reading from now joins the topic's
// running "now" reader wherever it is (now, for it).
//
// A reader is ephemeral: a kgo client without a consumer group, its
// partitions assigned directly (ConsumePartitions) at offsets found by
// timestamp (kadm ListOffsetsAfterMilli) or at their end, read_committed,
// and it commits nothing. It never writes. It ends when its last
// subscriber leaves.
//
// Bounded: a reader hands at most MaxReadRate records a second to its
// subscribers; the others are dropped and counted (Stats.Skipped), which
// the page shows as "sampled". A subscriber that does not keep up (its
// buffer of subBuffer batches full) loses batches, counted the same way.

const subBuffer = 64

// mergeWait is how long a reader waits for a partition known to have
// records it has not fetched yet, before passing on the others' newer
// ones (see merger).
const mergeWait = 500 * time.Millisecond

// HubConfig is how the Hub reaches Kafka.
type HubConfig struct {
	Brokers    []string
	ClientOpts []kgo.Opt
	// MaxReadRate is the most records a second one reader passes on.
	// Default 1000 (BENCHMARKS.md, "Runbook previews beside a pipeline").
	MaxReadRate int
	Logger      *slog.Logger
}

// Hub owns the source readers. Safe for concurrent use.
type Hub struct {
	cfg HubConfig
	log *slog.Logger

	mu      sync.Mutex
	readers map[readerKey]*reader
	wg      sync.WaitGroup
}

type readerKey struct {
	topic string
	from  int64 // ms; 0: now
}

// NewHub makes a Hub.
func NewHub(cfg HubConfig) *Hub {
	if cfg.MaxReadRate <= 0 {
		cfg.MaxReadRate = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Hub{cfg: cfg, log: cfg.Logger.With("component", "runbook-source"), readers: map[readerKey]*reader{}}
}

// Stats is what a subscription has seen of its source.
type Stats struct {
	// Read counts the records passed on; Skipped those dropped to keep
	// under the read rate (or because the subscriber was behind).
	Read    int64 `json:"read"`
	Skipped int64 `json:"skipped"`
	// Readers is how many previews share this read.
	Readers int `json:"readers"`
	// Err is the reader's last error ("" when none).
	Err string `json:"err,omitempty"`
	// Reading: the reader has found its start offsets and reads from
	// them; records produced from then on reach the preview.
	Reading bool `json:"reading"`
}

// Subscription is one preview's share of a reader.
type Subscription struct {
	// C delivers batches of records in partition order.
	C     <-chan []*kgo.Record
	c     chan []*kgo.Record
	r     *reader
	h     *Hub
	mu    sync.Mutex
	stats Stats
}

// Stats returns the subscription's counts.
func (s *Subscription) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	s.r.mu.Lock()
	st.Readers = len(s.r.subs)
	st.Err, st.Reading = s.r.err, s.r.reading
	s.r.mu.Unlock()
	return st
}

// Close leaves the reader (the last one out stops it). Idempotent.
func (s *Subscription) Close() { s.h.leave(s) }

// Subscribe joins the reader of topic from (zero: now), starting it if
// there is none.
func (h *Hub) Subscribe(topic string, from time.Time) *Subscription {
	k := readerKey{topic: topic}
	if !from.IsZero() {
		k.from = from.UnixMilli()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.readers[k]
	if r == nil {
		r = &reader{key: k, subs: map[*Subscription]struct{}{}, done: make(chan struct{})}
		var ctx context.Context
		ctx, r.cancel = context.WithCancel(context.Background())
		h.readers[k] = r
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer close(r.done)
			h.run(ctx, r)
		}()
	}
	s := &Subscription{c: make(chan []*kgo.Record, subBuffer), r: r, h: h}
	s.C = s.c
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s
}

func (h *Hub) leave(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := s.r
	r.mu.Lock()
	_, in := r.subs[s]
	delete(r.subs, s)
	last := len(r.subs) == 0
	r.mu.Unlock()
	if in && last && h.readers[r.key] == r {
		delete(h.readers, r.key)
		r.cancel()
	}
}

// Close stops every reader and waits for them.
func (h *Hub) Close() {
	h.mu.Lock()
	for k, r := range h.readers {
		r.cancel()
		delete(h.readers, k)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

type reader struct {
	key    readerKey
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	err     string
	reading bool
}

func (r *reader) setErr(err error) {
	r.mu.Lock()
	if err == nil {
		r.err = ""
	} else {
		r.err = err.Error()
	}
	r.mu.Unlock()
}

// run reads until ctx ends, retrying its start (the topic may not exist
// yet) every few seconds.
func (h *Hub) run(ctx context.Context, r *reader) {
	for ctx.Err() == nil {
		err := h.read(ctx, r)
		if ctx.Err() != nil {
			return
		}
		r.setErr(err)
		h.log.Debug("source reader", "topic", r.key.topic, "err", err)
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
	}
}

// startOffsets are the offsets a reader starts at: the first at or after
// from, or every partition's end.
func (h *Hub) startOffsets(ctx context.Context, k readerKey) (map[string]map[int32]kgo.Offset, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.cfg.Brokers...)}, h.cfg.ClientOpts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var listed kadm.ListedOffsets
	if k.from != 0 {
		listed, err = adm.ListOffsetsAfterMilli(lctx, k.from, k.topic)
	} else {
		listed, err = adm.ListEndOffsets(lctx, k.topic)
	}
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("topic %s: list offsets: %w", k.topic, err)
	}
	out := map[int32]kgo.Offset{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Partition >= 0 {
			out[o.Partition] = kgo.NewOffset().At(o.Offset)
		}
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s: no partitions (does it exist?)", k.topic)
	}
	return map[string]map[int32]kgo.Offset{k.topic: out}, nil
}

func (h *Hub) read(ctx context.Context, r *reader) error {
	offsets, err := h.startOffsets(ctx, r.key)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(h.cfg.Brokers...),
		kgo.ClientID("eddy-runbook"),
		kgo.ConsumePartitions(offsets),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.FetchMaxBytes(4 << 20),
	}, h.cfg.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	r.setErr(nil)
	r.mu.Lock()
	r.reading = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.reading = false
		r.mu.Unlock()
	}()
	var sec int64
	var used int
	parts := make([]int32, 0, len(offsets[r.key.topic]))
	for p := range offsets[r.key.topic] {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	m := newMerger(mergeWait, parts...)
	for ctx.Err() == nil {
		// A bounded poll: the merger's wait for a lagging partition ends
		// even when nothing arrives.
		pctx, pcancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fs := cl.PollRecords(pctx, 2000)
		pcancel()
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			r.setErr(ferr)
		}
		now := time.Now()
		m.add(fs, now)
		recs := m.drain(now)
		if len(recs) == 0 {
			continue
		}
		// The read rate: at most MaxReadRate records a second go on, a
		// sample of each fetch spread over it (every k-th record).
		if now := time.Now().Unix(); now != sec {
			sec, used = now, 0
		}
		room := h.cfg.MaxReadRate - used
		kept := recs
		if len(recs) > room {
			kept = make([]*kgo.Record, 0, max(room, 0))
			if room > 0 {
				step := float64(len(recs)) / float64(room)
				for i := 0; i < room; i++ {
					kept = append(kept, recs[int(float64(i)*step)])
				}
			}
		}
		used += len(kept)
		skipped := int64(len(recs) - len(kept))
		r.mu.Lock()
		for s := range r.subs {
			s.mu.Lock()
			select {
			case s.c <- kept:
				s.stats.Read += int64(len(kept))
				s.stats.Skipped += skipped
			default:
				s.stats.Skipped += int64(len(recs))
			}
			s.mu.Unlock()
		}
		r.mu.Unlock()
		if used >= h.cfg.MaxReadRate {
			select {
			case <-time.After(time.Until(time.Unix(sec+1, 0))):
			case <-ctx.Done():
			}
		}
	}
	return nil
}

// merger orders the records of a reader's partitions for the engine. A
// fetch holds several partitions' records, partition after partition, and
// a partition's records may come a fetch later than another's; fed so, the
// later ones would be late behind the newest of the first. The App's
// partition group (processor/partition_group.go) buffers each partition
// and forwards the head with the lowest event time, waiting a while for a
// partition known to have more (its high watermark beyond what was
// fetched). A preview has not decoded its records yet, so it does the same
// by record timestamp: each partition's order kept, ties taken in turn
// (the n-th record of each partition before the n+1-th of any).
//
// A partition with nothing buffered holds the others back a while, since
// its next record may be older than theirs: up to maxWait after it ran
// empty when its high watermark says it has more, and otherwise up to
// maxWait after the oldest record held arrived. The second rule is for the
// records of one produce request spread over several partitions: a fetch
// may return one partition's share before the others' are written, with no
// word yet that the others have more (Kafka Streams waits for empty
// partitions the same way, max.task.idle.ms). Every partition of the read
// is known from the start (newMerger's parts), so one never fetched yet
// holds the others too. A partition that stays empty costs each record at
// most maxWait of delay.
type merger struct {
	parts   map[int32]*mpart
	order   []int32 // partitions in the order first seen
	maxWait time.Duration
}

type mpart struct {
	recs       []*kgo.Record
	arrived    []time.Time // when each of recs was added
	taken      int64       // records handed on
	next, hwm  int64       // offset after the last fetched; high watermark
	emptySince time.Time
}

// newMerger makes a merger of the given partitions (more are added as
// fetches name them).
func newMerger(maxWait time.Duration, parts ...int32) *merger {
	m := &merger{parts: map[int32]*mpart{}, maxWait: maxWait}
	for _, p := range parts {
		m.part(p)
	}
	return m
}

func (m *merger) part(id int32) *mpart {
	mp := m.parts[id]
	if mp == nil {
		mp = &mpart{}
		m.parts[id] = mp
		m.order = append(m.order, id)
	}
	return mp
}

// add buffers a fetch that arrived at now.
func (m *merger) add(fs kgo.Fetches, now time.Time) {
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		mp := m.part(p.Partition)
		if n := len(p.Records); n > 0 {
			mp.recs = append(mp.recs, p.Records...)
			for range n {
				mp.arrived = append(mp.arrived, now)
			}
			mp.next = p.Records[n-1].Offset + 1
			mp.emptySince = time.Time{}
		}
		if p.HighWatermark > mp.hwm {
			mp.hwm = p.HighWatermark
		}
	})
}

// drain returns the records that can go on now, in order.
func (m *merger) drain(now time.Time) []*kgo.Record {
	var out []*kgo.Record
	for {
		var best *mpart
		emptyWaits := false // an empty partition with nothing known of it
		for _, id := range m.order {
			p := m.parts[id]
			if len(p.recs) == 0 {
				if p.hwm > p.next { // more to come: wait for it, a while
					if p.emptySince.IsZero() {
						p.emptySince = now
					}
					if now.Sub(p.emptySince) < m.maxWait {
						return out
					}
					continue
				}
				emptyWaits = true
				continue
			}
			if best == nil {
				best = p
				continue
			}
			a, b := p.recs[0], best.recs[0]
			if a.Timestamp.Before(b.Timestamp) || (a.Timestamp.Equal(b.Timestamp) && p.taken < best.taken) {
				best = p
			}
		}
		if best == nil {
			return out
		}
		if emptyWaits && now.Sub(m.oldestArrival()) < m.maxWait {
			return out
		}
		out = append(out, best.recs[0])
		best.recs[0] = nil
		best.recs = best.recs[1:]
		best.arrived = best.arrived[1:]
		best.taken++
	}
}

// oldestArrival is when the longest-held buffered record arrived (each
// partition's records arrive in order, so its first is its oldest).
func (m *merger) oldestArrival() time.Time {
	var t time.Time
	for _, p := range m.parts {
		if len(p.arrived) > 0 && (t.IsZero() || p.arrived[0].Before(t)) {
			t = p.arrived[0]
		}
	}
	return t
}

// mergeByTime is the order of recs (one fetch) through a merger that
// does not wait.
func mergeByTime(recs []*kgo.Record) []*kgo.Record {
	m := newMerger(0)
	var fs kgo.Fetches
	byP := map[int32]int{}
	var parts []kgo.FetchPartition
	for _, r := range recs {
		i, ok := byP[r.Partition]
		if !ok {
			i = len(parts)
			byP[r.Partition] = i
			parts = append(parts, kgo.FetchPartition{Partition: r.Partition})
		}
		parts[i].Records = append(parts[i].Records, r)
	}
	fs = kgo.Fetches{{Topics: []kgo.FetchTopic{{Partitions: parts}}}}
	m.add(fs, time.Now())
	return m.drain(time.Now())
}
