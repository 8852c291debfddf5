package processor

// Group membership: the callbacks franz-go runs when partitions are
// assigned, revoked or lost. They run serialized with the processing loop
// (kgo.BlockRebalanceOnPoll: never between a poll and AllowRebalance) and
// take a.mu. They must be quick: the group waits for them, and a member
// that does not rejoin within the rebalance timeout is removed from the
// group. So assignment only registers and pauses the partitions to restore
// (restore.go); revocation commits (a produce flush and an offset commit,
// bounded by the commit's own timeouts) because the partitions' work must
// be committed before another member owns them.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/state"
)

// onAssigned learns where newly assigned source partitions start (for
// event-time ordering) and starts the restores of newly assigned
// aggregation partitions (restore.go), without waiting for them: their
// fetches stay paused until they are restored.
func (a *App) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	// cl, not a.cl: the group may assign before kgo.NewClient has returned
	// and a.cl is set.
	if n := countParts(assigned); n > 0 { // cooperative rebalances also call with none
		a.mu.Lock()
		tasks := len(a.tasks)
		a.mu.Unlock()
		a.log.Info("partitions assigned", "count", n, "partitions", fmtParts(assigned), "tasks_before", tasks)
	}
	// Network I/O, without a.mu: both take their own locks to record
	// what they learned.
	a.learnSourcePositions(ctx, cl, assigned)
	a.watch.assigned(ctx, cl, assigned)
	a.mu.Lock()
	defer a.mu.Unlock()
	if h := a.hooks.holdFetch; h.d > 0 && slices.Contains(assigned[h.sp.Topic], h.sp.Partition) {
		cl.PauseFetchPartitions(map[string][]int32{h.sp.Topic: {h.sp.Partition}})
		a.heldUntil = a.clock.Now().Add(h.d)
	}
	a.startRestoresLocked(cl, assigned)
	a.sb.poke()
}

// countParts is the number of partitions in m.
func countParts(m map[string][]int32) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

// fmtParts renders m as "topic[0 1 2] other[3]", topics sorted.
func fmtParts(m map[string][]int32) string {
	topics := make([]string, 0, len(m))
	for t := range m {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	var b []byte
	for i, t := range topics {
		if i > 0 {
			b = append(b, ' ')
		}
		ps := slices.Clone(m[t])
		slices.Sort(ps)
		b = fmt.Appendf(b, "%s%v", t, ps)
	}
	return string(b)
}

// fail hands a fatal error to Run's loop, which stops with it (the first
// one wins).
func (a *App) fail(err error) {
	a.log.Error("fatal", "err", err)
	select {
	case a.fatal <- err:
	default:
	}
}

// onRevoked commits everything, then drops the revoked partitions. The
// partitions' Pebble state stays on disk: if they come back, only the
// changelog tail is restored.
func (a *App) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelRestoresLocked(cl, revoked)
	if n := countParts(revoked); n > 0 && !a.closing.Load() {
		a.log.Info("partitions revoked; committing and handing them over", "count", n, "partitions", fmtParts(revoked))
	}
	if a.eos {
		// The transaction session aborts the open transaction at its next
		// End (ending it here would deadlock); that End resets the tasks
		// to their committed state. Only drop what is no longer ours.
		a.dropLocked(revoked)
		return
	}
	if err := a.commitLocked(ctx); err != nil {
		a.fail(fmt.Errorf("commit on revoke: %w", err))
		a.dropLocked(revoked)
		return
	}
	a.dropLocked(revoked)
}

// onLost drops partitions without committing (another member may already
// own them): uncommitted work is discarded and will be redone there.
func (a *App) onLost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelRestoresLocked(cl, lost)
	if n := countParts(lost); n > 0 {
		a.log.Warn("partitions lost (this worker left or was removed from the group); their uncommitted work is redone by their next owner",
			"count", n, "partitions", fmtParts(lost))
	}
	a.dropLocked(lost)
}

func (a *App) dropLocked(parts map[string][]int32) {
	a.offRetry.drop(parts)
	for topic, ps := range parts {
		for _, p := range ps {
			delete(a.srcPos, state.SourcePartition{Topic: topic, Partition: p})
			a.pg.drop(state.SourcePartition{Topic: topic, Partition: p})
			if st := a.stageOf(topic); st != nil {
				k := taskKey{st.idx, p}
				for _, t := range a.tasks[k] {
					t.store.DropCache()
					a.dropWatermarkMetrics(t)
				}
				delete(a.tasks, k)
				// Its store may now be kept warm (standby.go), once its
				// last restore job has ended.
				var jobDone <-chan struct{}
				if j := a.rst.last[k]; j != nil {
					jobDone = j.done
				}
				a.sb.release(k, jobDone)
				a.sb.poke()
				if a.am != nil {
					a.am.drop(k.owner())
				}
			}
		}
	}
	a.m.tasks.Set(float64(a.taskCount()))
}

// learnSourcePositions (without a.mu, which it takes to record what it
// learned) tells the partition group where each newly assigned
// source partition starts and ends, so it waits for a partition that has a
// backlog instead of racing ahead of it. Failures only cost ordering
// quality (logged), never correctness.
func (a *App) learnSourcePositions(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	var topics []string
	for topic := range assigned {
		if !a.isAggInput(topic) {
			topics = append(topics, topic)
		}
	}
	if len(topics) == 0 {
		return
	}
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	starts, err2 := adm.ListStartOffsets(ctx, topics...)
	committed, err3 := adm.FetchOffsets(ctx, a.p.spec.GroupID())
	if err = errors.Join(err, err2, err3); err != nil {
		a.log.Warn("could not learn source positions; ordering across partitions may suffer", "err", err)
		return
	}
	a.mu.Lock() // a.pg
	defer a.mu.Unlock()
	now := a.clock.Now()
	for _, topic := range topics {
		for _, p := range assigned[topic] {
			end, _ := ends.Lookup(topic, p)
			next := int64(0)
			if s, ok := starts.Lookup(topic, p); ok {
				next = s.Offset
			}
			if c, ok := committed.Lookup(topic, p); ok && c.At >= 0 {
				next = c.At
			}
			a.pg.known(state.SourcePartition{Topic: topic, Partition: p}, next, end.Offset, now)
		}
	}
}
