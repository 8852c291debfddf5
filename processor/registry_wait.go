package processor

// Waiting for the schema registry.
//
// A record whose schema id the decoder has not seen needs the registry. If
// the registry cannot be asked (schema.ErrRegistryUnavailable), the record
// is neither good nor bad: its fate is undecided. The invariant is that an
// undecided record is never dead-lettered and no offset is committed past
// it:
//
//   - at-least-once: the partition is paused (no more fetches), the
//     undecided record and everything fetched after it are held here, in
//     order, and retried with backoff; nothing of them is forwarded or
//     applied, so the positions that commits write (srcPos for the
//     repartition stage, a task's inputPos for the aggregation stage)
//     stay before them. When the record decodes (or is found bad), the held
//     records go through the normal path and the partition resumes.
//   - exactly-once: a transaction commits every offset polled except
//     those of records the partition group buffers (commit.go, holdBack),
//     and a held record is not in the partition group, so holding is not
//     enough: the transaction is aborted (which
//     rewinds the consumer to the committed offsets and the tasks to their
//     committed state), and polling pauses with backoff before the records
//     are read again.
//
// Records of the aggregation input (the repartition topic) were decoded
// once already by the repartition stage of some worker, so their schemas
// are usually cached; after a restart or a rebalance they may not be, and
// they wait the same way.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/backoff"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
)

// isUndecided reports whether err means a record could not be decided now.
func isUndecided(err error) bool { return errors.Is(err, schema.ErrRegistryUnavailable) }

const (
	registryRetryMin = 250 * time.Millisecond
	registryRetryMax = 5 * time.Second
)

// stall is one paused partition's undecided records.
type stall struct {
	recs    []*kgo.Record // the undecided record first, then what was fetched after it
	agg     bool          // aggregation input (processAgg), else the repartition stage
	next    int64         // the position after recs, transaction markers included (control.go)
	retryAt time.Time
	backoff backoff.Backoff
}

// stall holds recs (the first is undecided) and pauses their partition.
// Under exactly-once it returns cause instead, for abortForRegistry.
func (a *App) stall(sp state.SourcePartition, recs []*kgo.Record, agg bool, cause error) error {
	if a.eos {
		return cause
	}
	now := a.clock.Now()
	st := &stall{recs: append([]*kgo.Record(nil), recs...), agg: agg, next: a.fetchedTo(sp, recs),
		backoff: backoff.Backoff{Min: registryRetryMin, Max: registryRetryMax}}
	st.retryAt = now.Add(st.backoff.Next())
	a.stalled[sp] = st
	a.cl.PauseFetchPartitions(map[string][]int32{sp.Topic: {sp.Partition}})
	a.m.registryWaiting.Set(1)
	a.warn.Warn("waiting for schema registry: partition paused, its records are neither dead-lettered nor committed until the registry answers",
		"topic", sp.Topic, "partition", sp.Partition, "offset", recs[0].Offset, "held", len(recs), "err", cause)
	return nil
}

// retryStalled retries held records whose backoff has passed, in order,
// resuming each partition whose records are all decided. Partitions paused
// without a stall (revoked and reassigned) are resumed.
func (a *App) retryStalled(ctx context.Context) error {
	if len(a.stalled) == 0 {
		a.resumeUnstalled()
		return nil
	}
	now := a.clock.Now()
	down := false // the registry failed this round: do not ask again for other partitions
	for sp, st := range a.stalled {
		if now.Before(st.retryAt) {
			continue
		}
		n := 0
		var cause error
		a.loopW.resetClock()
		for !down && n < len(st.recs) {
			rec := st.recs[n]
			if st.agg {
				if err := a.processAgg(ctx, a.loopW, rec); err != nil {
					if !isUndecided(err) {
						return err
					}
					cause, down = err, true
					break
				}
			} else {
				ev, re, uerr := a.p.prepare(ctx, rec, now)
				if uerr != nil {
					cause, down = uerr, true
					break
				}
				a.pg.add(sp, []srcItem{{rec: rec, ev: ev, re: re}}, 0, now)
			}
			n++
		}
		clear(st.recs[:n])
		st.recs = st.recs[n:]
		if len(st.recs) == 0 {
			delete(a.stalled, sp)
			a.readTo(sp, st.next, -1)
			a.cl.ResumeFetchPartitions(map[string][]int32{sp.Topic: {sp.Partition}})
			a.log.Info("schema registry answered: partition resumed", "topic", sp.Topic, "partition", sp.Partition)
			continue
		}
		d := st.backoff.Next()
		st.retryAt = now.Add(d)
		if cause != nil {
			a.warn.Warn("waiting for schema registry", "topic", sp.Topic, "partition", sp.Partition,
				"offset", st.recs[0].Offset, "held", len(st.recs), "retry_in", d, "err", cause)
		}
	}
	if len(a.stalled) == 0 {
		a.m.registryWaiting.Set(0)
	}
	a.resumeUnstalled()
	return nil
}

// resumeUnstalled resumes paused partitions that hold no records here and
// are not restoring (restore.go pauses those): pauses persist in the
// client across rebalances, stalls do not.
func (a *App) resumeUnstalled() {
	paused := a.cl.PauseFetchPartitions(nil)
	resume := map[string][]int32{}
	for topic, ps := range paused {
		for _, p := range ps {
			sp := state.SourcePartition{Topic: topic, Partition: p}
			if a.stalled[sp] == nil && !a.restoringLocked(topic, p) && !a.heldByTest(sp) {
				resume[topic] = append(resume[topic], p)
			}
		}
	}
	if len(resume) > 0 {
		a.cl.ResumeFetchPartitions(resume)
	}
}

// heldByTest reports whether testHooks.holdFetch still holds sp.
func (a *App) heldByTest(sp state.SourcePartition) bool {
	return a.hooks.holdFetch.sp == sp && a.hooks.holdFetch.d > 0 && a.clock.Now().Before(a.heldUntil)
}

// dropStalls forgets the held records of revoked or lost partitions (the
// next owner reads them again from the committed offset) and resumes them
// in the client.
func (a *App) dropStalls(parts map[string][]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(a.stalled, state.SourcePartition{Topic: topic, Partition: p})
		}
	}
	if len(a.stalled) == 0 {
		a.m.registryWaiting.Set(0)
	}
	if a.cl != nil {
		a.cl.ResumeFetchPartitions(parts)
	}
}

// abortForRegistry handles an undecided record under exactly-once: the
// open transaction is aborted (the session rewinds the consumer to the
// committed offsets), the tasks go back to their committed state, and
// polling waits (waitRegistryEOS) before the records are read again.
func (a *App) abortForRegistry(ctx context.Context, cause error) error {
	if _, err := a.sess.End(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("abort transaction while waiting for the schema registry: %w", err)
	}
	if err := a.resetToCommittedLocked(); err != nil {
		return err
	}
	if err := a.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	d := a.eosBackoff.Next()
	a.eosWait = a.clock.Now().Add(d)
	a.m.registryWaiting.Set(1)
	a.warn.Warn("waiting for schema registry: transaction aborted, reading again from the committed offsets",
		"retry_in", d, "err", cause)
	a.lastCommit = a.clock.Now()
	return nil
}

// registryAnsweredEOS notes, under exactly-once, a pass that read records
// without waiting for the registry.
func (a *App) registryAnsweredEOS() {
	if a.eosBackoff.Cur > 0 && a.eosWait.IsZero() {
		a.eosBackoff.Reset()
		a.m.registryWaiting.Set(0)
		a.log.Info("schema registry answered: reading again")
	}
}

// waitRegistryEOS sleeps while an exactly-once worker backs off from a
// registry outage. It reports whether it slept (the caller loops again).
// After a pass that needed no wait, the gauge goes back to 0.
func (a *App) waitRegistryEOS(ctx context.Context) bool {
	d := a.eosWait.Sub(a.clock.Now())
	if a.eosWait.IsZero() {
		return false
	}
	if d <= 0 {
		a.eosWait = time.Time{}
		return false
	}
	t := time.NewTimer(min(d, 100*time.Millisecond))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return true
}
