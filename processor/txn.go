package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddy-streams/eddy/internal/backoff"
	"github.com/eddy-streams/eddy/state"
)

// The commit under exactly-once (pendingCommit.commitTxn; the real
// environment's transaction end is App.endTxn): everything produced
// since the transaction began (outputs, repartition, late and dead-letter
// records, changelog rows and markers) and the consumed offsets commit
// atomically in one Kafka transaction; only then is Pebble written.
//
// Crash points: before the transaction commits, the broker aborts it (or
// the next incarnation's fencing does), consumers with read_committed never
// see its records, and restore never applies them; Pebble was not touched.
// After it commits but before Pebble is written, Pebble is behind the
// changelog and restore replays only that tail. No crash needs a full
// rebuild of the store.
//
// A transaction that aborts without a crash (a rebalance revoked
// partitions, or this worker was fenced) rewinds the consumer to the
// committed offsets; the tasks go back to their Pebble state, which is
// exactly the last committed state.
//
// Source records that the partition group buffers for event-time order
// (partition_group.go) are not forwarded to commit: the transaction's
// offset commit names, for their partitions, the offset of the first
// buffered record (holdBack), and they stay buffered for the next
// transaction, so exactly-once orders a backlog across partitions as
// at-least-once does. Invariant: a committed source offset is never past a
// record that is not in a committed transaction. Where the buffers go:
//   - crash: the next owner reads from the committed offset, the first
//     buffered record;
//   - revoke or loss: dropLocked drops the partition's buffer; the session
//     aborts the open transaction at the next End, and the new owner reads
//     from the committed offset;
//   - abort (revoke, fencing, registry outage): End rewinds the consumer to
//     the committed offsets (those holdBack wrote), and
//     resetToCommittedLocked drops every buffer.
//
// End's deadline (commitEnv.endTimeout, the session timeout, covering the
// flush and the end) is a bound because End confirms group membership with
// a heartbeat, and after a coordinator change the group cannot rejoin
// while the loop blocks rebalancing. On timeout the commit aborts, the
// loop allows the rebalance, and the work is redone from the committed
// state. Any error of End (a timeout, or the broker unreachable or
// restarting: "unable to initialize a producer ID", NOT_COORDINATOR) is
// handled by aborting, retried while it fails (abortTxn), and going back
// to the committed state, unless the worker is shutting down. Known gap:
// if End's EndTxn commit reached the broker but its answer did not come
// back, the transaction may have committed; redoing it should then count
// nothing twice (tasks skip source offsets they applied; not tested) but
// can emit a final result a second time.

// endTxn ends the open transaction: commit (with the consumed offsets,
// lowered by holdBack) or abort.
func (a *App) endTxn(ctx context.Context, commit bool) (bool, error) {
	// The session commits the polled position of every partition; the
	// records the partition group still buffers are not in the transaction,
	// so their partitions commit the offset of the first of them instead
	// (holdBack), and they stay buffered.
	held := a.pg.held()
	ctx = kgo.PreTxnCommitFnContext(ctx, func(req *kmsg.TxnOffsetCommitRequest) error {
		holdBack(req, held)
		return nil
	})
	try := kgo.TryCommit
	if !commit {
		try = kgo.TryAbort
	}
	return a.sess.End(ctx, try)
}

// abortTxn aborts the open transaction after its commit timed out (the
// group or the broker did not answer in time: a coordinator change, a
// broker restart). An abort that fails too is tried again, with backoff,
// for up to abortRetryFor: after a transport error franz-go keeps the
// transaction open and marks its end unconfirmed, and End with TryAbort is
// its documented retry (it reloads the producer id, which fences whatever
// the failed attempt left open). Only a worker that cannot abort for that
// long gives up (the caller fails, and a restart restores from the
// changelog).
func (a *App) abortTxn(ctx context.Context) error {
	limit := max(time.Minute, 3*a.cfg.SessionTimeout)
	start := time.Now()
	b := backoff.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, a.cfg.SessionTimeout)
		_, err := a.sess.End(actx, kgo.TryAbort)
		cancel()
		if err == nil || ctx.Err() != nil || time.Since(start) > limit {
			return err
		}
		d := b.Next()
		a.warn.Warn("transaction abort failed; trying again", "attempt", attempt, "retry_in", d, "err", err)
		backoff.Sleep(ctx, d)
	}
}

// holdBack lowers, in a transaction's offset commit, the offset of every
// source partition with records still buffered (held: the first of them)
// to that record's offset. franz-go's GroupTransactSession commits the
// polled position of every partition (End commits UncommittedOffsets,
// which are the polled, "dirty", positions whatever AutoCommitMarks and
// MarkCommitRecords say); PreTxnCommitFnContext is its documented hook to
// change the request, and End records what was sent as the committed
// offsets, so an abort later rewinds to them.
func holdBack(req *kmsg.TxnOffsetCommitRequest, held map[state.SourcePartition]kgo.EpochOffset) {
	for i := range req.Topics {
		rt := &req.Topics[i]
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			h, ok := held[state.SourcePartition{Topic: rt.Topic, Partition: rp.Partition}]
			if ok && h.Offset < rp.Offset {
				rp.Offset, rp.LeaderEpoch = h.Offset, h.Epoch
			}
		}
	}
}

// resetToCommittedLocked drops everything not committed: cached state,
// buffered source records, produce errors. Tasks are rebuilt from Pebble,
// which holds exactly the last committed transaction's state.
func (a *App) resetToCommittedLocked() error {
	now := a.clock.Now()
	for _, ts := range a.tasks {
		for i, t := range ts {
			t.store.DropCache()
			cp, _, err := t.store.Checkpoint()
			if err != nil {
				return fmt.Errorf("reset %s partition %d: %w", t.r.p.spec.Store, t.partition, err)
			}
			nt := a.newStageTask(t.r, t.partition, t.store, cp, now)
			if err := nt.rebuildIndex(); err != nil {
				return fmt.Errorf("reset %s partition %d: %w", t.r.p.spec.Store, t.partition, err)
			}
			ts[i] = nt
		}
	}
	a.pg.rewind(a.cl.CommittedOffsets(), now)
	clear(a.srcPos)
	a.dirtySrc = false
	a.prodMu.Lock()
	a.prodErr = nil
	a.prodMu.Unlock()
	return nil
}
