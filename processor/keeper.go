package processor

// How eddy keeps the topics it reads: the repartition purge and the
// log-start watch.
//
// Purge. The repartition topic has no time retention (topology.Spec.Topics):
// its records carry event time as their timestamp, and a replay of old data
// must not be deleted before eddy reads it back. eddy keeps it small
// itself, as Kafka Streams does: after a commit, records below the group's
// committed offset of each repartition partition are processed and their
// effects committed (changelog and outputs flushed first, or in the same
// transaction), so nothing needs them again; the purger deletes them with
// DeleteRecords. Invariant: it never deletes at or above an offset the group
// has committed (it only ever passes offsets from the client's committed
// offsets, which move forward only, and a reset recreates the topic with
// the group stopped), and it leaves each partition's last record (see
// purge). It runs off the processing goroutine, at most once
// per purge interval, and once more at shutdown after the final commit;
// a failure is logged and retried at the next interval, never fatal
// (only disk use grows).
//
// Log-start watch. franz-go resets a partition whose committed offset is
// below the log start (the broker deleted records eddy had not read) to
// the log start, silently. That is data loss, so the watch makes it loud:
// at each assignment it compares the group's committed offsets of the
// source and repartition partitions with their log start offsets, and on
// every fetch it compares the next offset it expected with the log start
// the fetch response reports. A gap is logged (topic, partition, expected
// offset, log start, records lost), counted
// (eddy_records_expired_before_read_total) and makes the worker not ready
// (/readyz) until an operator acknowledges it (POST /expired/ack) or the
// worker restarts. Processing goes on: the lost records cannot be read
// again, and stopping would only add lag.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/admin"
)

// DefaultPurgeInterval is how often, at most, the repartition topic is
// purged (Kafka Streams' repartition.purge.interval.ms).
const DefaultPurgeInterval = 30 * time.Second

// keeperMetrics are the metrics of the purge and the log-start watch.
type keeperMetrics struct {
	purged      prometheus.Counter
	purgeErrors prometheus.Counter
	expired     *prometheus.CounterVec
	unacked     prometheus.Gauge
}

func newKeeperMetrics(reg prometheus.Registerer) *keeperMetrics {
	m := &keeperMetrics{
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_repartition_purged_records_total",
			Help: "Records of the repartition topic deleted by eddy after the group committed them."}),
		purgeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_repartition_purge_errors_total",
			Help: "Failed purges of the repartition topic (retried at the next interval)."}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_records_expired_before_read_total",
			Help: "Records the broker deleted before eddy read them (committed offset below the log start), by topic."}, []string{"topic"}),
		unacked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eddy_records_expired_unacknowledged",
			Help: "Records lost to expiry not yet acknowledged (POST /expired/ack); the worker is not ready while it is above 0."}),
	}
	if reg != nil {
		reg.MustRegister(m.purged, m.purgeErrors, m.expired, m.unacked)
	}
	return m
}

// purger deletes the repartition topic's records below the committed
// offsets it is told of (committed), from its own goroutine.
type purger struct {
	adm      *kadm.Client
	topic    string
	log      *slog.Logger
	m        *keeperMetrics
	interval time.Duration

	mu      sync.Mutex
	pending map[int32]int64 // committed offsets, per partition
	purged  map[int32]int64 // offsets purged up to

	quit chan struct{}
	done chan struct{}
}

func newPurger(adm *kadm.Client, topic string, interval time.Duration, log *slog.Logger, m *keeperMetrics) *purger {
	return &purger{adm: adm, topic: topic, log: log, m: m, interval: interval,
		pending: map[int32]int64{}, purged: map[int32]int64{}, quit: make(chan struct{}), done: make(chan struct{})}
}

// committed records the group's committed offsets (of every topic; only
// the repartition topic's are kept). Cheap: called after every commit.
func (p *purger) committed(offs map[string]map[int32]kgo.EpochOffset) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for part, eo := range offs[p.topic] {
		if eo.Offset > p.pending[part] {
			p.pending[part] = eo.Offset
		}
	}
}

func (p *purger) run() {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), p.interval)
			p.purge(ctx)
			cancel()
		}
	}
}

// stop ends the goroutine and purges once more (after the final commit),
// bounded by timeout.
func (p *purger) stop(timeout time.Duration) {
	close(p.quit)
	<-p.done
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p.purge(ctx)
}

// purge deletes, on each partition with a committed offset beyond what was
// purged, the records below it.
func (p *purger) purge(ctx context.Context) {
	p.mu.Lock()
	want := map[int32]int64{}
	for part, o := range p.pending {
		if o > p.purged[part] {
			want[part] = o
		}
	}
	p.mu.Unlock()
	if len(want) == 0 {
		return
	}
	// Each partition keeps its last record: a partition emptied by
	// DeleteRecords depends on the broker keeping its end offset in
	// metadata alone, which kfake (the embedded broker of `eddy demo`)
	// loses when it restarts without a clean snapshot: the end then goes
	// back to the start, below the group's committed offset. One record
	// per partition is the price. The start offsets are listed to count
	// what the purge deletes (a failure there only costs the count).
	ends, err := p.adm.ListEndOffsets(ctx, p.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		p.m.purgeErrors.Inc()
		p.log.Warn("purge of the repartition topic failed; retrying at the next interval", "topic", p.topic, "err", err)
		return
	}
	before, _ := p.adm.ListStartOffsets(ctx, p.topic)
	offs := kadm.Offsets{}
	for part, o := range want {
		if e, ok := ends.Lookup(p.topic, part); ok {
			o = min(o, e.Offset-1)
		}
		if b, ok := before.Lookup(p.topic, part); ok && b.Err == nil && o <= b.Offset {
			// Already purged that far (by the worker that owns the
			// partition now, when this one's offset is from before a
			// rebalance): asking again would be out of range.
			p.mu.Lock()
			p.purged[part] = max(p.purged[part], o)
			p.mu.Unlock()
			continue
		}
		if o > p.purged[part] {
			offs.AddOffset(p.topic, part, o, -1)
		}
	}
	if len(offs) == 0 {
		return
	}
	resp, err := p.adm.DeleteRecords(ctx, offs)
	if err != nil {
		p.m.purgeErrors.Inc()
		p.log.Warn("purge of the repartition topic failed; retrying at the next interval", "topic", p.topic, "err", err)
		return
	}
	var failed []string
	var deleted int64
	p.mu.Lock()
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf("%d: %v", r.Partition, r.Err))
			continue
		}
		o, _ := offs.Lookup(p.topic, r.Partition)
		if b, ok := before.Lookup(p.topic, r.Partition); ok && b.Err == nil {
			deleted += max(0, o.At-b.Offset)
		}
		p.purged[r.Partition] = max(p.purged[r.Partition], o.At)
	}
	p.mu.Unlock()
	p.m.purged.Add(float64(deleted))
	p.log.Debug("purged the repartition topic below the committed offsets", "topic", p.topic, "records", deleted)
	if len(failed) > 0 {
		p.m.purgeErrors.Inc()
		p.log.Warn("purge of the repartition topic failed on some partitions; retrying at the next interval",
			"topic", p.topic, "partitions", strings.Join(failed, "; "))
	}
}

// expiry is one loss found by the watch.
type expiry struct {
	topic              string
	partition          int32
	expected, logStart int64
	at                 time.Time
}

func (e expiry) lost() int64 { return e.logStart - e.expected }

// startWatch is the log-start watch. Its methods are called from the
// processing loop and the assignment callback; it has its own lock
// because /readyz reads it from HTTP goroutines.
type startWatch struct {
	log   *slog.Logger
	m     *keeperMetrics
	now   func() time.Time
	group string

	mu      sync.Mutex
	next    map[tp]int64 // next offset expected to be fetched
	unacked []expiry
}

type tp struct {
	topic     string
	partition int32
}

func newStartWatch(group string, log *slog.Logger, m *keeperMetrics, now func() time.Time) *startWatch {
	return &startWatch{log: log, m: m, now: now, group: group, next: map[tp]int64{}}
}

// assigned compares the group's committed offsets of the newly assigned
// partitions with their log start offsets. It needs two requests; a
// failure is logged (the fetch check still runs).
func (w *startWatch) assigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	if w == nil || len(assigned) == 0 {
		return
	}
	topics := make([]string, 0, len(assigned))
	for t := range assigned {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsets(ctx, w.group)
	if err == nil {
		err = committed.Error()
	}
	starts, err2 := adm.ListStartOffsets(ctx, topics...)
	if err2 == nil {
		err2 = starts.Error()
	}
	if err != nil || err2 != nil {
		w.log.Warn("could not compare committed offsets with log start offsets", "err", fmt.Sprint(err, " ", err2))
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range topics {
		for _, p := range assigned[t] {
			k := tp{t, p}
			delete(w.next, k)
			c, ok := committed.Lookup(t, p)
			if !ok || c.Err != nil || c.At < 0 {
				continue // nothing committed: the group starts at the log start
			}
			s, ok := starts.Lookup(t, p)
			if !ok {
				continue
			}
			if c.At < s.Offset {
				w.lostLocked(expiry{topic: t, partition: p, expected: c.At, logStart: s.Offset, at: w.now()}, "committed")
				w.next[k] = s.Offset
			} else {
				w.next[k] = c.At
			}
		}
	}
}

// fetched checks each fetched partition: records the watch expected at an
// offset below the log start the fetch reports were deleted unread. Gaps
// above the log start (aborted records, compaction) are not losses and are
// not reported. It sees a poll before its transaction markers are taken
// out (control.go), so a marker at the worker's position is not a record
// to lose.
func (w *startWatch) fetched(fs kgo.Fetches) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		k := tp{fp.Topic, fp.Partition}
		first := fp.Records[0].Offset
		if exp, ok := w.next[k]; ok && exp < fp.LogStartOffset && first >= fp.LogStartOffset {
			w.lostLocked(expiry{topic: fp.Topic, partition: fp.Partition, expected: exp, logStart: fp.LogStartOffset, at: w.now()}, "next_offset")
		}
		w.next[k] = fp.Records[len(fp.Records)-1].Offset + 1
	})
}

// skipped notes that the worker's position in topic/partition moved from
// from to logStart without a fetch (applyListedStarts): the records
// between were deleted unread, and are reported as fetched would if the
// watch expected the partition at an offset below logStart (a partition
// the group had read or committed; a new group starts wherever the log
// starts). It reports whether it counted a loss.
func (w *startWatch) skipped(topic string, partition int32, from, logStart int64) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	k := tp{topic, partition}
	exp, ok := w.next[k]
	w.next[k] = max(exp, logStart)
	if !ok || exp >= logStart {
		return false
	}
	w.lostLocked(expiry{topic: topic, partition: partition, expected: exp, logStart: logStart, at: w.now()}, "next_offset")
	return true
}

func (w *startWatch) lostLocked(e expiry, what string) {
	w.unacked = append(w.unacked, e)
	w.m.expired.WithLabelValues(e.topic).Add(float64(e.lost()))
	var n int64
	for _, u := range w.unacked {
		n += u.lost()
	}
	w.m.unacked.Set(float64(n))
	w.log.Error("records expired before eddy read them: the broker deleted them (retention) below the group's position; they are not in any result",
		"topic", e.topic, "partition", e.partition, what, e.expected, "log_start", e.logStart, "records_lost", e.lost(),
		"what_to_do", "see docs/operations.md, \"Records expired before eddy read them\"; then POST /expired/ack to make the worker ready again")
}

// notReady is the reason the worker is not ready because of unacknowledged
// losses, or "".
func (w *startWatch) notReady() string {
	if w == nil {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.unacked) == 0 {
		return ""
	}
	var b strings.Builder
	var n int64
	for _, e := range w.unacked {
		n += e.lost()
	}
	fmt.Fprintf(&b, "not ready: %d records expired before eddy read them (deleted by the broker's retention):", n)
	for _, e := range w.unacked {
		fmt.Fprintf(&b, "\n  %s/%d: expected offset %d, log start %d, %d records lost (%s)", e.topic, e.partition, e.expected,
			e.logStart, e.lost(), e.at.UTC().Format(time.RFC3339))
	}
	b.WriteString("\nsee docs/operations.md, \"Records expired before eddy read them\"; POST /expired/ack acknowledges them")
	return b.String()
}

// ack acknowledges every loss found so far; it returns how many records.
func (w *startWatch) ack() int64 {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for _, e := range w.unacked {
		n += e.lost()
	}
	if n > 0 {
		w.log.Warn("expired records acknowledged by an operator", "records", n)
	}
	w.unacked = nil
	w.m.unacked.Set(0)
	return n
}

// handleExpiredAck serves POST /expired/ack.
func (w *startWatch) handleExpiredAck(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "POST to acknowledge records that expired before eddy read them", http.StatusMethodNotAllowed)
		return
	}
	fmt.Fprintf(rw, "acknowledged %d expired records\n", w.ack())
}

// startKeeping runs at the start of App.Run, after EnsureTopics: it checks
// the settings of the existing topics (logging what would delete records
// eddy writes, with the fix), prepares the run-time retention warning and
// starts the repartition purger. The function it returns stops the purger
// after a last purge and closes its client. The client is new (opts), not
// the one that created the topics: kgo caches metadata answers for a few
// seconds, and that one's say the new topics do not exist.
func (a *App) startKeeping(ctx context.Context, opts []kgo.Opt) (func(), error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	problems, err := admin.CheckTopics(ctx, adm, a.cfg.Spec)
	if err != nil {
		a.log.Warn("could not check the settings of existing topics", "err", err)
	}
	logTopicProblems(a.log, problems, strings.Join(a.cfg.Brokers, ","))
	a.guard = newRetentionGuard(a.log, a.clock.Now, problems)
	if !a.p.spec.NeedsRepartition() {
		return cl.Close, nil
	}
	for _, t := range a.repartitionTopics() {
		pu := newPurger(adm, t, a.cfg.PurgeInterval, a.log, a.km)
		a.purges = append(a.purges, pu)
		go pu.run()
	}
	return func() {
		for _, pu := range a.purges {
			pu.stop(5 * time.Second)
		}
		cl.Close()
	}, nil
}
