package console

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// Tailing a step (GET /api/v1/tail): the latest records of one topic, then
// new ones as they arrive, as server-sent events.
//
// Every tail of one topic shares one reader (tailReader), as runbook
// previews share one read of a topic: the topic is fetched and each record
// decoded once however many views tail it, and each view applies its own
// filter and sampling to the decoded records. The reader is ephemeral, like
// NSQ's ephemeral channels: a kgo client with no consumer group that
// starts each partition at its end minus the first view's `last` and
// commits nothing, so a tail never joins, rebalances or moves the
// pipeline's group. It ends when its last view does. A view that joins a
// running reader starts from the newest `last` records of each partition
// the reader keeps (up to maxLast, as it read them).
//
// Bounded: the reader hands each view its events over a channel of
// tailBuffer; when a view's channel is full (its browser does not keep up)
// that view is dropped, not buffered, and the others go on. Two bounds keep
// a tail of a busy topic cheap for the worker (BENCHMARKS.md, "The
// console's cost"), each said with a "sample" event: at most
// Config.MaxReadRate records a second are decoded, the newest first, the
// others counted as skipped (and a reader more than MaxReadRate records
// behind a partition's end jumps to its newest records rather than fetch
// the rest); and above Config.MaxRate matching records a second a view is
// sent 1 in N, N from the previous second's rate.

const (
	tailBuffer   = 256
	defaultLast  = 20
	maxLast      = 500
	pingInterval = 15 * time.Second
	// skipKeep is how many of a partition's newest records a tail that
	// jumps ahead keeps.
	skipKeep = 20
)

// TailEvent types (the SSE "event:" field).
const (
	evRecord = "record" // data: Record
	evSample = "sample" // data: Sample
	evEnd    = "end"    // data: {"reason": ...}, the server ends the view
)

// Sample is sent when a sampling rate changes.
type Sample struct {
	// Every: 1 in Every matching records is sent (1: all).
	Every int `json:"every"`
	// Rate is matching records per second in the last second.
	Rate int `json:"rate"`
	// Skipped counts the records this view jumped over, never read, to
	// keep up with the newest ones of a busy topic.
	Skipped int64 `json:"skipped"`
}

func (c *Console) handleTail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	step := q.Get("step")
	topic, ok := c.stepTopic(step)
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Error: "unknown step " + strconv.Quote(step) + " (GET /api/v1/pipeline lists them)"})
		return
	}
	last := defaultLast
	if s := q.Get("last"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxLast {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "last must be a number from 0 to " + strconv.Itoa(maxLast)})
			return
		}
		last = n
	}
	filter, err := compileFilter(q.Get("filter"))
	if err != nil {
		d := exprReport(err)
		writeJSON(w, http.StatusBadRequest, apiError{Error: "filter: " + d.Error, Detail: &d})
		return
	}
	ctx, done, ok := c.openView(w, r)
	if !ok {
		return
	}
	defer done()

	sub := &tailSub{
		filter:  filter,
		smp:     &sampler{max: c.cfg.MaxRate, every: 1},
		events:  make(chan tailEvent, tailBuffer),
		dropped: make(chan struct{}),
	}
	backlog, err := c.subscribeTail(topic, last, sub)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	defer c.unsubscribeTail(topic, sub)

	sse := newSSE(w, c.cfg.WriteTimeout, c.cfg.Now)
	tick := time.NewTicker(pingInterval)
	defer tick.Stop()
	if err := sse.send(evSample, Sample{Every: 1}); err != nil {
		return
	}
	for _, e := range backlog {
		if err := sse.send(e.kind, e.data); err != nil {
			return
		}
	}
	for {
		select {
		case e := <-sub.events:
			if err := sse.send(e.kind, e.data); err != nil {
				return // the client is gone or too slow to take one event
			}
		case <-sub.dropped:
			c.log.Info("tail view dropped: the client did not keep up", "topic", topic)
			_ = sse.send(evEnd, map[string]string{"reason": errSlowClient.Error()})
			return
		case <-tick.C:
			if err := sse.ping(); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

type tailEvent struct {
	kind string
	data any
}

// tailSub is one view of a tailReader. Its filter and sampler are used
// under the reader's mu only.
type tailSub struct {
	filter   *topology.Expr
	smp      *sampler
	skipped0 int64 // the reader's skipped count when the view joined
	events   chan tailEvent
	dropped  chan struct{} // closed when the reader dropped the view
}

// tailReader reads one topic for every view tailing it.
type tailReader struct {
	c      *Console
	topic  string
	cancel context.CancelFunc
	done   chan struct{} // closed when the read has ended and its client closed

	mu      sync.Mutex // guards what follows
	subs    map[*tailSub]struct{}
	kept    map[int32][]Record // per partition, at least the newest maxLast decoded records (fewer than 2*maxLast)
	skipped int64              // records never decoded, to keep up
}

// subscribeTail adds sub to topic's reader, starting one (at each
// partition's end minus last) when there is none, and returns what sub is
// sent first: the newest last records of each partition the reader has
// kept, filtered and sampled.
func (c *Console) subscribeTail(topic string, last int, sub *tailSub) ([]tailEvent, error) {
	c.tailsMu.Lock()
	defer c.tailsMu.Unlock()
	r := c.tails[topic]
	if r == nil {
		var err error
		if r, err = c.startTailReader(topic, last); err != nil {
			return nil, err
		}
		c.tails[topic] = r
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sub.skipped0 = r.skipped
	var backlog []tailEvent
	parts := make([]int32, 0, len(r.kept))
	for p := range r.kept {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for _, p := range parts {
		recs := r.kept[p]
		for _, rec := range recs[max(len(recs)-last, 0):] {
			backlog = r.admit(sub, rec, backlog)
		}
	}
	r.subs[sub] = struct{}{}
	return backlog, nil
}

// unsubscribeTail removes sub from topic's reader; the last view to leave
// stops the reader and waits for its client to close.
func (c *Console) unsubscribeTail(topic string, sub *tailSub) {
	c.tailsMu.Lock()
	r := c.tails[topic]
	if r == nil {
		c.tailsMu.Unlock()
		return
	}
	r.mu.Lock()
	delete(r.subs, sub)
	empty := len(r.subs) == 0
	r.mu.Unlock()
	if empty {
		delete(c.tails, topic)
	}
	c.tailsMu.Unlock()
	if empty {
		r.cancel()
		<-r.done
	}
}

// tailReaders is how many topic readers run (for tests).
func (c *Console) tailReaders() int {
	c.tailsMu.Lock()
	defer c.tailsMu.Unlock()
	return len(c.tails)
}

func (c *Console) startTailReader(topic string, last int) (*tailReader, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.ClientID("eddy-console-" + c.cfg.Spec.App),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd().Relative(-int64(last))),
		kgo.FetchMaxWait(500 * time.Millisecond),
		// Small fetches: a tail reads at most MaxReadRate records a second.
		kgo.FetchMaxBytes(1 << 20),
		kgo.FetchMaxPartitionBytes(256 << 10),
	}, c.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(c.ctx)
	r := &tailReader{
		c: c, topic: topic, cancel: cancel, done: make(chan struct{}),
		subs: map[*tailSub]struct{}{}, kept: map[int32][]Record{},
	}
	go func() {
		defer close(r.done)
		defer cl.Close()
		r.read(ctx, cl)
	}()
	return r, nil
}

// read fetches and decodes the topic until ctx ends, handing each record
// to every view.
func (r *tailReader) read(ctx context.Context, cl *kgo.Client) {
	c := r.c
	var budgetSec int64 // the second the read budget is counted in
	var budgetUsed int  // records decoded in it
	for ctx.Err() == nil {
		fs := cl.PollRecords(ctx, 1000)
		fs.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil {
				c.log.Debug("tail fetch", "topic", t, "partition", p, "err", err)
			}
		})
		// The read budget: at most MaxReadRate records a second are
		// decoded, the newest of each partition's fetch first; decoding
		// every record of a busy topic would take the worker's CPU. A
		// reader far behind a partition's end jumps to its newest records
		// instead of fetching everything in between.
		now := c.cfg.Now()
		if now.Unix() != budgetSec {
			budgetSec, budgetUsed = now.Unix(), 0
		}
		var parts []kgo.FetchTopicPartition
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				parts = append(parts, p)
			}
		})
		jump := map[string]map[int32]kgo.EpochOffset{}
		var skipped int64
		var batch []*kgo.Record
		for i, p := range parts {
			share := (c.cfg.MaxReadRate - budgetUsed) / (len(parts) - i)
			recs := p.Records
			if len(recs) > share {
				skipped += int64(len(recs) - max(share, 0))
				recs = recs[len(recs)-max(share, 0):]
			}
			budgetUsed += len(recs)
			batch = append(batch, recs...)
			next := p.Records[len(p.Records)-1].Offset + 1
			if behind := p.HighWatermark - next; behind > int64(c.cfg.MaxReadRate) {
				if jump[p.Topic] == nil {
					jump[p.Topic] = map[int32]kgo.EpochOffset{}
				}
				jump[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: -1, Offset: p.HighWatermark - skipKeep}
				skipped += behind - skipKeep
			}
		}
		if len(jump) > 0 {
			cl.SetOffsets(jump)
		}
		// Decoded once, outside the lock; handed to every view under it.
		decoded := make([]Record, len(batch))
		for i, rec := range batch {
			decoded[i] = c.decodeRecord(ctx, rec)
		}
		r.deliver(decoded, skipped)
		// Paced: once this second's budget is spent, wait for the next
		// second rather than fetch more.
		if budgetUsed >= c.cfg.MaxReadRate {
			select {
			case <-time.After(time.Until(time.Unix(budgetSec+1, 0))):
			case <-ctx.Done():
			}
		}
	}
}

// deliver keeps recs and hands them to every view, after telling each
// view of newly skipped records.
func (r *tailReader) deliver(recs []Record, skipped int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		// Trimmed to the newest maxLast once twice that many are kept,
		// not at every record: one copy per maxLast records.
		k := append(r.kept[rec.Partition], rec)
		if len(k) >= 2*maxLast {
			k = slices.Delete(k, 0, len(k)-maxLast)
		}
		r.kept[rec.Partition] = k
	}
	r.skipped += skipped
	var out []tailEvent
	for sub := range r.subs {
		if skipped > 0 && !r.send(sub, tailEvent{evSample, r.sample(sub)}) {
			continue
		}
		for _, rec := range recs {
			if out = r.admit(sub, rec, out[:0]); !r.sendAll(sub, out) {
				break
			}
		}
	}
}

// admit appends to out what sub is sent for rec: nothing when its filter
// does not match, a sample event when its sampling changed, and rec when
// sampled in.
func (r *tailReader) admit(sub *tailSub, rec Record, out []tailEvent) []tailEvent {
	if sub.filter != nil {
		env := rec.Value
		if env == nil {
			env = map[string]any{}
		}
		if ok, err := sub.filter.Eval(env); err != nil || !ok {
			return out // a record the filter cannot judge does not match
		}
	}
	ok, changed := sub.smp.admit(r.c.cfg.Now())
	if changed {
		out = append(out, tailEvent{evSample, r.sample(sub)})
	}
	if ok {
		out = append(out, tailEvent{evRecord, rec})
	}
	return out
}

func (r *tailReader) sample(sub *tailSub) Sample {
	return Sample{Every: sub.smp.every, Rate: sub.smp.lastRate, Skipped: r.skipped - sub.skipped0}
}

func (r *tailReader) sendAll(sub *tailSub, evs []tailEvent) bool {
	for _, e := range evs {
		if !r.send(sub, e) {
			return false
		}
	}
	return true
}

// send hands e to sub without waiting; a view whose buffer is full is
// dropped (removed, and told by closing its dropped channel).
func (r *tailReader) send(sub *tailSub, e tailEvent) bool {
	select {
	case sub.events <- e:
		return true
	default:
		delete(r.subs, sub)
		close(sub.dropped)
		return false
	}
}

// sampler decides which matching records a view is sent: all of them up to
// max per second; above that 1 in every, where every follows the previous
// second's rate, and never more than max in any second.
type sampler struct {
	max      int
	every    int
	sec      int64 // the current second (unix)
	seen     int   // matching records in this second
	sent     int   // sent in this second
	lastRate int
}

// admit counts one matching record at now and says whether to send it, and
// whether every changed (the client is told).
func (s *sampler) admit(now time.Time) (send, changed bool) {
	if sec := now.Unix(); sec != s.sec {
		rate := s.seen
		if sec != s.sec+1 {
			rate = 0 // a quiet second in between
		}
		every := (rate + s.max - 1) / s.max
		if every < 1 {
			every = 1
		}
		changed = every != s.every
		s.sec, s.seen, s.sent, s.every, s.lastRate = sec, 0, 0, every, rate
	}
	s.seen++
	if s.sent >= s.max || (s.seen-1)%s.every != 0 {
		return false, changed
	}
	s.sent++
	return true, changed
}

// openView takes one of the console's view slots for a live stream and
// returns the stream's context, which ends with the request or when the
// console closes, and done to release both. Without a free slot it answers
// 503 and ok is false: open views are bounded.
func (c *Console) openView(w http.ResponseWriter, r *http.Request) (ctx context.Context, done func(), ok bool) {
	select {
	case c.views <- struct{}{}:
	default:
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "too many open views (" + strconv.Itoa(cap(c.views)) + "); close some"})
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		<-c.views
	}, true
}
