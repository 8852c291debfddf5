package processor

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// lagEvery is how often the lag of every owned partition is measured
// against its end offset.
const lagEvery = 5 * time.Second

// lagWatch exports eddy_consumer_lag_records for every partition the
// worker owns, not only those that fetched records: processFetches sets
// it from each fetch with records (its high watermark), and refresh,
// every lagEvery, from the partitions' end offsets against the worker's
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

// refresh measures the lag of every owned partition. committed is the
// group's committed offsets as the client knows them.
func (l *lagWatch) refresh(ctx context.Context, adm *kadm.Client, committed func(topic string, partition int32) (int64, bool)) error {
	l.mu.Lock()
	var topics []string
	for t, ps := range l.owned {
		if len(ps) > 0 {
			topics = append(topics, t)
		}
	}
	l.mu.Unlock()
	if len(topics) == 0 {
		return nil
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for t, ps := range l.owned {
		for p, next := range ps {
			end, ok := ends.Lookup(t, p)
			if !ok || end.Err != nil {
				continue
			}
			pos := next
			if c, ok := committed(t, p); ok && c > pos {
				pos = c
			}
			if pos < 0 {
				if s, ok := starts.Lookup(t, p); ok && s.Err == nil {
					pos = s.Offset
				} else {
					continue
				}
			}
			l.m.lag.WithLabelValues(t, strconv.Itoa(int(p))).Set(float64(max(0, end.Offset-pos)))
		}
	}
	return nil
}

// runLag refreshes the lag metrics every lagEvery until ctx ends.
func (a *App) runLag(ctx context.Context) {
	tick := time.NewTicker(lagEvery)
	defer tick.Stop()
	adm := kadm.NewClient(a.cl)
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
		if err := a.lagW.refresh(rctx, adm, committed); err != nil && ctx.Err() == nil {
			a.warn.Warn("could not measure consumer lag", "err", err)
		}
		cancel()
	}
}
