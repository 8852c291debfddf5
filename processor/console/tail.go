package console

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Tailing a step (GET /api/v1/tail): the latest records of one topic, then
// new ones as they arrive, as server-sent events.
//
// The reader is ephemeral, like NSQ's ephemeral channels: a kgo client
// with no consumer group that starts each partition at its end minus
// `last` and commits nothing, so a tail never joins, rebalances or moves
// the pipeline's group, and ends with the request.
//
// Bounded: one reader goroutine hands events to the writer over a channel
// of tailBuffer; when it is full (the browser does not keep up) the view
// is dropped, not buffered. Two bounds keep a tail of a busy topic cheap
// for the worker (BENCHMARKS.md, "The console's cost"), each said with a
// "sample" event: at most Config.MaxReadRate records a second are decoded
// and filtered, the newest first, the others counted as skipped (and a
// reader more than MaxReadRate records behind a partition's end jumps to
// its newest records rather than fetch the rest); and above Config.MaxRate
// matching records a second 1 in N is sent, N from the previous second's
// rate.

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
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	defer cl.Close()

	sse := newSSE(w, c.cfg.WriteTimeout, c.cfg.Now)
	type ev struct {
		kind string
		data any
	}
	events := make(chan ev, tailBuffer)
	dropped := make(chan struct{})
	// The reader goroutine ends before the handler returns (and before its
	// client closes): the handler cancels it and waits.
	rctx, rcancel := context.WithCancel(ctx)
	readerDone := make(chan struct{})
	defer func() {
		rcancel()
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		defer close(events)
		ctx := rctx
		smp := &sampler{max: c.cfg.MaxRate, every: 1}
		var budgetSec int64 // the second the read budget is counted in
		var budgetUsed int  // records decoded in it
		var skipped int64   // records never decoded, to keep up
		sample := func() Sample { return Sample{Every: smp.every, Rate: smp.lastRate, Skipped: skipped} }
		send := func(e ev) bool {
			select {
			case events <- e:
				return true
			default:
				close(dropped)
				return false
			}
		}
		for ctx.Err() == nil {
			fs := cl.PollRecords(ctx, 1000)
			fs.EachError(func(t string, p int32, err error) {
				if ctx.Err() == nil {
					c.log.Debug("tail fetch", "topic", t, "partition", p, "err", err)
				}
			})
			// The read budget: at most MaxReadRate records a second are
			// decoded and filtered, the newest of each partition's fetch
			// first; decoding every record of a busy topic would take the
			// worker's CPU. A reader far behind a partition's end jumps to
			// its newest records instead of fetching everything in between.
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
			skippedBefore := skipped
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
			if skipped != skippedBefore && !send(ev{evSample, sample()}) {
				return
			}
			for _, rec := range batch {
				out := c.decodeRecord(ctx, rec)
				if filter != nil {
					env := out.Value
					if env == nil {
						env = map[string]any{}
					}
					if okf, err := filter.Eval(env); err != nil || !okf {
						continue // a record the filter cannot judge does not match
					}
				}
				ok, changed := smp.admit(c.cfg.Now())
				if changed && !send(ev{evSample, sample()}) {
					return
				}
				if ok && !send(ev{evRecord, out}) {
					return
				}
			}
			// Paced: once this second's budget is spent, wait for the next
			// second rather than fetch more.
			if budgetUsed >= c.cfg.MaxReadRate {
				select {
				case <-time.After(time.Until(time.Unix(budgetSec+1, 0))):
				case <-ctx.Done():
				}
			}
		}
	}()

	tick := time.NewTicker(pingInterval)
	defer tick.Stop()
	if err := sse.send(evSample, Sample{Every: 1}); err != nil {
		return
	}
	for {
		select {
		case e, ok := <-events:
			if !ok {
				select {
				case <-dropped:
					c.log.Info("tail view dropped: the client did not keep up", "topic", topic)
					_ = sse.send(evEnd, map[string]string{"reason": errSlowClient.Error()})
				default:
				}
				return
			}
			if err := sse.send(e.kind, e.data); err != nil {
				return // the client is gone or too slow to take one event
			}
		case <-tick.C:
			if err := sse.ping(); err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
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
