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
// is dropped, not buffered. Above Config.MaxRate matching records per
// second the server samples: it sends 1 in N, N from the previous second's
// rate, and says so with a "sample" event.

const (
	tailBuffer   = 256
	defaultLast  = 20
	maxLast      = 500
	pingInterval = 15 * time.Second
)

// TailEvent types (the SSE "event:" field).
const (
	evRecord = "record" // data: Record
	evSample = "sample" // data: Sample
	evEnd    = "end"    // data: {"reason": ...}, the server ends the view
)

// Sample is sent when the sampling rate changes.
type Sample struct {
	// Every: 1 in Every matching records is sent (1: all).
	Every int `json:"every"`
	// Rate is matching records per second in the last second.
	Rate int `json:"rate"`
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
	select {
	case c.views <- struct{}{}:
		defer func() { <-c.views }()
	default:
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "too many open views (" + strconv.Itoa(cap(c.views)) + "); close some"})
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.ClientID("eddy-console-" + c.cfg.Spec.App),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd().Relative(-int64(last))),
		kgo.FetchMaxWait(500 * time.Millisecond),
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
	go func() {
		defer close(events)
		smp := &sampler{max: c.cfg.MaxRate, every: 1}
		for ctx.Err() == nil {
			fs := cl.PollRecords(ctx, 1000)
			fs.EachError(func(t string, p int32, err error) {
				if ctx.Err() == nil {
					c.log.Debug("tail fetch", "topic", t, "partition", p, "err", err)
				}
			})
			var full bool
			fs.EachRecord(func(rec *kgo.Record) {
				if full {
					return
				}
				out := c.decodeRecord(ctx, rec)
				if filter != nil {
					env := out.Value
					if env == nil {
						env = map[string]any{}
					}
					okf, err := filter.Eval(env)
					if err != nil || !okf {
						return // a record the filter cannot judge does not match
					}
				}
				send, changed := smp.admit(c.cfg.Now())
				if changed {
					select {
					case events <- ev{evSample, Sample{Every: smp.every, Rate: smp.lastRate}}:
					default:
						full = true
						return
					}
				}
				if !send {
					return
				}
				select {
				case events <- ev{evRecord, out}:
				default:
					full = true
				}
			})
			if full {
				close(dropped)
				return
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
