package processor

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// lagEvery bounds how long a listing of the end offsets may take.
const lagEvery = 5 * time.Second

// lagListEvery is how often runLag lists the end offsets of the owned
// partitions: at the watermark heartbeat (reportEvery, 2s by default), so
// that a partition with records to read is known to be one well before it
// could count as idle (applyListedEnds), but no more often than every
// 500ms (each listing is a metadata request and two ListOffsets requests:
// the ends, and the log starts for applyListedStarts).
func lagListEvery(spec *topology.Spec) time.Duration {
	return max(reportEvery(spec), 500*time.Millisecond)
}

// lagWatch exports eddy_consumer_lag_records for every partition the
// worker owns, not only those that fetched records: processFetches sets
// it from each fetch with records (its high watermark), and refresh,
// every lagListEvery, from the partitions' end offsets against the worker's
// position (the next offset it processes: from its last fetch, else the
// group's committed offset, else the log start where it begins to read).
// A partition's series is removed when the partition is revoked or lost.
//
// Its own lock: the group's callbacks, the processing loop and the
// refresher goroutine all use it.
type lagWatch struct {
	m     *metrics
	mu    sync.Mutex
	owned map[string]map[int32]int64 // topic -> partition -> next offset after the last fetched record, -1 unknown
}

func newLagWatch(m *metrics) *lagWatch {
	return &lagWatch{m: m, owned: make(map[string]map[int32]int64)}
}

func (l *lagWatch) assigned(parts map[string][]int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for t, ps := range parts {
		if l.owned[t] == nil {
			l.owned[t] = make(map[int32]int64)
		}
		for _, p := range ps {
			if _, ok := l.owned[t][p]; !ok {
				l.owned[t][p] = -1
			}
		}
	}
}

func (l *lagWatch) revoked(parts map[string][]int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(l.owned[t], p)
			l.m.lag.DeleteLabelValues(t, strconv.Itoa(int(p)))
		}
	}
}

// fetched records a fetch of topic/partition up to next (the offset after
// its last record) with the partition's high watermark.
func (l *lagWatch) fetched(topic string, partition int32, next, hwm int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ps := l.owned[topic]; ps != nil {
		if _, ok := ps[partition]; ok {
			ps[partition] = next
		}
	}
	l.m.lag.WithLabelValues(topic, strconv.Itoa(int(partition))).Set(float64(max(0, hwm-next)))
}

// listedEnd is an owned partition's end offset, listed when the worker's
// position in it was behind.
type listedEnd struct {
	sp  state.SourcePartition
	end int64
}

// listedStart is an owned partition's log start offset, for the loop
// (applyListedStarts).
type listedStart struct {
	sp    state.SourcePartition
	start int64
}

// listing is what one refresh learned.
type listing struct {
	behind []listedEnd   // owned partitions with records to read
	starts []listedStart // owned partitions' log starts
	ends   kadm.ListedOffsets
}

// refresh measures the lag of every owned partition and returns those
// with records to read, and every owned partition's log start. committed
// is the group's committed offsets as the client knows them.
//
// also are topics to list whether owned or not (the source topics, for
// newSources); ends is the whole listing.
func (l *lagWatch) refresh(ctx context.Context, adm *kadm.Client, committed func(topic string, partition int32) (int64, bool), also []string) (listing, error) {
	var out listing
	l.mu.Lock()
	topics := slices.Clone(also)
	for t, ps := range l.owned {
		if len(ps) > 0 && !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	l.mu.Unlock()
	if len(topics) == 0 {
		return out, nil
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return out, err
	}
	out.ends = ends
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return out, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for t, ps := range l.owned {
		for p, next := range ps {
			sp := state.SourcePartition{Topic: t, Partition: p}
			start, sok := starts.Lookup(t, p)
			sok = sok && start.Err == nil
			if sok {
				out.starts = append(out.starts, listedStart{sp: sp, start: start.Offset})
			}
			end, eok := ends.Lookup(t, p)
			if !eok || end.Err != nil {
				continue
			}
			pos := next
			if c, ok := committed(t, p); ok && c > pos {
				pos = c
			}
			if pos < 0 {
				if !sok {
					continue
				}
				pos = start.Offset
			}
			l.m.lag.WithLabelValues(t, strconv.Itoa(int(p))).Set(float64(max(0, end.Offset-pos)))
			if end.Offset > pos {
				out.behind = append(out.behind, listedEnd{sp: sp, end: end.Offset})
			}
		}
	}
	return out, nil
}

// moved notes that the worker's position in topic/partition moved to next
// without a fetch (its records before next were deleted: applyListedStarts).
func (l *lagWatch) moved(topic string, partition int32, next int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ps := l.owned[topic]; ps != nil {
		if cur, ok := ps[partition]; ok && cur < next {
			ps[partition] = next
		}
	}
}

// runLag refreshes the lag metrics until ctx ends, and hands the loop the
// end offsets of the partitions it is behind in (applyListedEnds).
func (a *App) runLag(ctx context.Context) {
	tick := time.NewTicker(lagListEvery(a.p.spec))
	defer tick.Stop()
	adm := kadm.NewClient(a.cl)
	sources := newSourceParts(a.inputs)
	if len(a.inputs) == 0 { // no repartition topic: the source partitions at start
		lctx, cancel := context.WithTimeout(ctx, lagEvery)
		if ins, err := listInputs(lctx, adm, a.p.spec.Source.Topics); err == nil {
			sources = newSourceParts(ins)
		}
		cancel()
	}
	committed := func(topic string, partition int32) (int64, bool) {
		eo, ok := a.cl.CommittedOffsets()[topic][partition]
		return eo.Offset, ok
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, lagEvery)
		l, err := a.lagW.refresh(rctx, adm, committed, a.p.spec.Source.Topics)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.warn.Warn("could not measure consumer lag", "err", err)
		}
		if added := sources.added(l.ends, a.p.spec.Source.Topics); len(added) > 0 {
			a.fail(a.sourcePartitionsAdded(added, l.ends))
			return
		}
		a.listed.Lock()
		a.listed.ends = append(a.listed.ends, l.behind...)
		if l.starts != nil {
			a.listed.starts = l.starts // the latest listing's
		}
		a.listed.Unlock()
	}
}

// sourcePartitionsAdded is the error a worker stops with when partitions
// were added to a source topic while it runs. A task is a partition of the
// repartition topic (or of the source, when it is keyed by the grouping
// key) and of the changelog, both made with the input's partition count at
// the pipeline's first start; more input partitions than that would move
// keys between tasks, and a worker started now would refuse to start
// (admin.EnsureTopics). Rather than leave the new partitions unread until
// the client's next metadata refresh, minutes later, and then read them
// behind every window, it stops and says why. A source topic that grew
// but still has no more partitions than the largest one is read from the
// next start on (the group's assignment and stream time then include it
// from the beginning).
func (a *App) sourcePartitionsAdded(added []state.SourcePartition, ends kadm.ListedOffsets) error {
	counts := map[string]int32{}
	ends.Each(func(o kadm.ListedOffset) {
		if slices.Contains(a.p.spec.Source.Topics, o.Topic) {
			counts[o.Topic] = max(counts[o.Topic], o.Partition+1)
		}
	})
	for _, t := range a.p.spec.Source.Topics {
		if counts[t] > a.aggParts {
			return fmt.Errorf("partitions were added to source topic %q while the worker ran (%s): it has %d partitions now, and the pipeline's topics %d; "+
				"keys cannot move between tasks: run the pipeline as a new app to read the new partitions (docs/scaling.md, More input partitions)",
				t, fmtSourceParts(added), counts[t], a.aggParts)
		}
	}
	return fmt.Errorf("partitions were added to a source topic while the worker ran (%s); stopping so that the next start reads them from the beginning", fmtSourceParts(added))
}

// sourceParts is what runLag knows of the source topics' partitions.
type sourceParts map[state.SourcePartition]bool

// newSourceParts starts from the source partitions at start (none when
// they could not be listed: then from the first listing).
func newSourceParts(inputs []state.SourcePartition) sourceParts {
	s := sourceParts{}
	for _, in := range inputs {
		s[in] = true
	}
	return s
}

// added returns the partitions of topics in ends that it did not know (none
// at its first listing when it started empty), and knows them from then.
func (s sourceParts) added(ends kadm.ListedOffsets, topics []string) []state.SourcePartition {
	first := len(s) == 0
	var out []state.SourcePartition
	ends.Each(func(o kadm.ListedOffset) {
		sp := state.SourcePartition{Topic: o.Topic, Partition: o.Partition}
		// A partition listed with an error (its leader moving, say)
		// exists all the same; -1 stands for a topic that failed whole.
		if o.Partition < 0 || s[sp] || !slices.Contains(topics, o.Topic) {
			return
		}
		s[sp] = true
		if !first {
			out = append(out, sp)
		}
	})
	slices.SortFunc(out, state.CompareSourcePartitions)
	return out
}

// fmtSourceParts renders ps as "topic/1 topic/2".
func fmtSourceParts(ps []state.SourcePartition) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s/%d", p.Topic, p.Partition)
	}
	return b.String()
}

// applyListedEnds (the loop, with a.mu) raises the known end of every
// partition runLag found records to read in. A partition's end is
// otherwise learned from fetches, which bring nothing while a partition's
// first fetch is slow (a loaded broker or machine, right after an
// assignment): until then the worker would take a partition it was
// assigned empty, or had read to the end, for one still read to the end:
// caught up, so idle after idle_timeout, and the other partitions'
// windows would close before its records are read.
func (a *App) applyListedEnds() {
	a.listed.Lock()
	ends := a.listed.ends
	a.listed.ends = nil
	a.listed.Unlock()
	for _, l := range ends {
		if st := a.stageOf(l.sp.Topic); st != nil {
			for _, t := range a.tasks[taskKey{st.idx, l.sp.Partition}] {
				t.inputEnd = max(t.inputEnd, l.end)
			}
		} else if q := a.pg.queues[l.sp]; q != nil {
			q.hwm = max(q.hwm, l.end)
		}
	}
}
