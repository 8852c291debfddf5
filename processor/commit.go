package processor

// The commit protocol (DESIGN.md, "The commit").
//
// It runs every commit interval, before partitions are revoked (at least
// once), and at shutdown, on the processing goroutine or with it stopped
// (a.mu). Its steps are in pendingCommit.Commit; everything it does to
// Kafka and Pebble goes through commitEnv, so commit_test.go runs it
// against a model of the broker and the store, at every crash point and
// failure.
//
// At-least-once:
//
//  1. Flush: for every task with changes, produce its dirty rows to its
//     changelog partition (tombstones for deleted windows) and, in
//     emit=update mode, the changed windows to the output topic
//     (App.flushTasks). Outputs of windows that closed since the last
//     commit, late and dead-letter records were produced as they
//     happened. Wait until all are acknowledged; any failure fails the
//     commit.
//  2. Produce one commit marker per task to its changelog partition, naming
//     the input position, stream time, upstream offsets and input
//     partitions' watermarks the flush reflects (state.Checkpoint), and
//     wait for it.
//  3. Commit the input offsets of everything processed. The processing
//     loop's periodic commits do not wait for the answer
//     (commitOffsetsAsync, below); a commit before a hand-over or at
//     shutdown does.
//  4. Write each task's rows and checkpoint (marker offset + 1) to Pebble in
//     one batch.
//
// Crash points and recovery:
//   - before 2 completes: the changelog may hold rows without a marker;
//     restore ignores rows after the last marker and the input is processed
//     again from the last marker's position. Outputs may repeat, with the
//     same values.
//   - between 2 and 3: the committed offset is behind the marker; on
//     restart records below the marker's position are skipped as already
//     applied (the engine's duplicate check, engine.Task.seen), so nothing
//     counts twice.
//   - between 3 and 4: Pebble is behind the changelog; restore replays only
//     the tail after the Pebble checkpoint.
//
// A failed offset commit (3) is not fatal: nothing is lost, the rows stay
// dirty and are flushed again, with a new marker, at the next commit.
// The repartition stage is stateless: its offsets are committed in step 3
// after its produces were acknowledged in step 1. A crash before that
// re-sends records to the repartition topic; tasks skip them by their
// source offset (the checkpoint's Upstream, engine.Task.seen), so they
// never double count.
//
// Exactly-once (txn.go): steps 1 and 2 produce inside the open Kafka
// transaction, 3 is the transaction's end, which commits the records and
// the input offsets atomically, and 4 follows only a committed end.
//
// Invariants, under both guarantees (commit_test.go asserts each):
//   - no input offset is committed past state that is not in the
//     changelog behind a commit marker (a marker is acknowledged, or its
//     transaction committed, before the offsets it covers are committed);
//   - Pebble is never ahead of the changelog: its checkpoint names a
//     marker that is acknowledged (and committed, under exactly-once);
//   - an aborted transaction leaves no trace in Pebble, and the tasks go
//     back to exactly Pebble's state.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddy-streams/eddy/state"
)

// flushWork is one task's part of a commit: the changes step 1 produced
// and, once acknowledged, the offset of its commit marker.
type flushWork struct {
	t       *task
	changes []state.Change
	marker  int64 // -1 until the marker is acknowledged
	// early: a chained rollup's task (rollups.go), whose marker is
	// acknowledged before the other markers are produced, under
	// at-least-once (pendingCommit.markers).
	early bool
}

// offsetMap is input offsets to commit, by topic and partition.
type offsetMap = map[string]map[int32]kgo.EpochOffset

// commitEnv is everything the commit protocol does to Kafka and Pebble.
// App.commitEnv is the real one; commit_test.go has a model.
type commitEnv struct {
	// produceMarkers produces one commit marker per task of work; each
	// w.marker is set to its marker's offset when acknowledged.
	produceMarkers func(work []*flushWork)
	// flush waits until everything produced is acknowledged and returns
	// the first produce error since the last commit.
	flush func(ctx context.Context) error
	// commitOffsets commits input offsets (at-least-once).
	commitOffsets func(ctx context.Context, offsets offsetMap) error
	// commitOffsetsAsync starts committing input offsets (at-least-once)
	// and returns: a failure is reported later, and the offsets are
	// committed again by the next commit.
	commitOffsetsAsync func(offsets offsetMap)
	// endTxn ends the open transaction (exactly-once), committing it with
	// the consumed offsets if commit, else aborting it. After an error,
	// the outcome is unknown: abortTxn must follow.
	endTxn func(ctx context.Context, commit bool) (committed bool, err error)
	// abortTxn aborts the open transaction, retrying while it fails.
	abortTxn func(ctx context.Context) error
	// writeStores writes every task's changes and checkpoint (its marker
	// offset + 1) to Pebble in one batch.
	writeStores func(work []*flushWork) error
	// crash is a process-level test's crash point (testhooks.go; never
	// returns in a worker that crashes there). A model returns true to
	// stop the commit there, as the process's death would.
	crash func(at CrashPoint, flushed bool) bool
	// endTimeout, when > 0, bounds the flush and the end of a transaction
	// together (txn.go).
	endTimeout time.Duration
	// warn reports a failure the commit survives.
	warn func(msg string, args ...any)
}

// errCrashed: the commit stopped at a crash point of a model (commitEnv.crash).
var errCrashed = errors.New("crashed at a test crash point")

// commitOutcome is how a commit that returned no error ended.
type commitOutcome int

const (
	// committed: offsets and state are committed, Pebble written.
	committed commitOutcome = iota
	// offsetsNotCommitted (at-least-once): the offset commit failed;
	// nothing is lost, the next commit redoes it. Pebble was not written.
	offsetsNotCommitted
	// txnAborted (exactly-once): the transaction aborted (a failed
	// produce, a revoke, fencing, a failed end); the caller goes back to
	// the last committed state (resetToCommittedLocked).
	txnAborted
)

// pendingCommit owns the pending state of one commit: the flushed work of
// every changed task and, under at-least-once, the input offsets it
// covers. Commit runs the protocol to its end; Abort gives it up.
type pendingCommit struct {
	env     *commitEnv
	eos     bool
	work    []*flushWork
	offsets offsetMap // at-least-once; exactly-once commits the session's offsets
	// async (at-least-once): step 3 does not wait for the offset commit
	// (asyncOffsets).
	async bool
}

// Commit runs steps 2 to 4 (step 1, the flush of the tasks, made work).
func (c *pendingCommit) Commit(ctx context.Context) (commitOutcome, error) {
	if c.eos {
		return c.commitTxn(ctx)
	}
	env, flushed := c.env, len(c.work) > 0
	if err := env.flush(ctx); err != nil {
		return 0, err
	}
	if env.crash(CrashAfterFlush, flushed) {
		return 0, errCrashed
	}
	if err := c.markers(ctx); err != nil {
		return 0, err
	}
	if env.crash(CrashAfterMarker, flushed) {
		return 0, errCrashed
	}
	switch {
	case len(c.offsets) == 0:
	case c.async:
		env.commitOffsetsAsync(c.offsets)
	default:
		if err := env.commitOffsets(ctx, c.offsets); err != nil {
			env.warn("offset commit failed; retrying at the next commit", "err", err)
			return offsetsNotCommitted, nil
		}
	}
	if env.crash(CrashAfterOffset, flushed) {
		return 0, errCrashed
	}
	if err := env.writeStores(c.work); err != nil {
		return 0, err
	}
	return committed, nil
}

// markers produces the commit markers of every task of the commit and
// waits for them (at-least-once). The markers of chained rollups' tasks
// come first, acknowledged before the others are produced: a chained task
// never restores behind the task it follows. (Were the finer rollup's
// marker in the changelog without the chained one's, a restore would have
// the finer rollup's windows closed and deleted but not yet merged into
// the chained rollup's: lost. The other way round, the input is processed
// again from the older position and the chained task skips the results
// it merged already: engine.Task.Follow.)
func (c *pendingCommit) markers(ctx context.Context) error {
	var early, rest []*flushWork
	for _, w := range c.work {
		if w.early {
			early = append(early, w)
		} else {
			rest = append(rest, w)
		}
	}
	if len(early) > 0 {
		c.env.produceMarkers(early)
		if err := c.env.flush(ctx); err != nil {
			return err
		}
	}
	c.env.produceMarkers(rest)
	return c.env.flush(ctx)
}

// commitTxn is Commit under exactly-once: the markers join the open
// transaction, which commits only if every record of it was written.
func (c *pendingCommit) commitTxn(ctx context.Context) (commitOutcome, error) {
	env, flushed := c.env, len(c.work) > 0
	env.produceMarkers(c.work)
	if env.crash(CrashAfterFlush, flushed) || env.crash(CrashAfterMarker, flushed) {
		return 0, errCrashed
	}
	ectx, cancel := ctx, context.CancelFunc(func() {})
	if env.endTimeout > 0 {
		ectx, cancel = context.WithTimeout(ctx, env.endTimeout)
	}
	// A record that failed to produce (forwarded, changelog, output) must
	// not be left out of a transaction that commits its input's offsets.
	commit := true
	if err := env.flush(ectx); err != nil {
		env.warn("a record of this transaction was not written; aborting it", "err", err)
		commit = false
	}
	ok, err := env.endTxn(ectx, commit)
	cancel()
	if err != nil && ctx.Err() == nil {
		env.warn("transaction end failed or timed out; aborting it", "err", err)
		ok, err = false, env.abortTxn(ctx)
	}
	if err != nil {
		return 0, fmt.Errorf("end transaction: %w", err)
	}
	if !ok {
		return txnAborted, nil
	}
	if env.crash(CrashAfterOffset, flushed) {
		return 0, errCrashed
	}
	if err := env.writeStores(c.work); err != nil {
		return 0, err
	}
	return committed, nil
}

// Abort gives the commit up. Under exactly-once it aborts the open
// transaction; under at-least-once there is nothing to undo (rows
// produced without a marker are ignored by restore) and the tasks keep
// their dirty rows for the next commit.
func (c *pendingCommit) Abort(ctx context.Context) error {
	if !c.eos {
		return nil
	}
	if _, err := c.env.endTxn(ctx, false); err != nil {
		return c.env.abortTxn(ctx)
	}
	return nil
}

// commitLocked flushes every changed task (step 1) and commits, waiting
// for the offset commit: before partitions are handed over, at shutdown.
func (a *App) commitLocked(ctx context.Context) error { return a.commitLockedAs(ctx, false) }

// commitLockedAs is commitLocked; with async, under at-least-once, the
// offset commit is not waited for (the processing loop's periodic
// commits: asyncOffsets).
func (a *App) commitLockedAs(ctx context.Context, async bool) error {
	work := a.flushTasks(ctx)
	retry := a.offRetry.take()
	if !a.eos && len(work) == 0 && !a.dirtySrc && len(retry) == 0 {
		a.lastCommit = a.clock.Now()
		return nil
	}
	c := &pendingCommit{env: a.commitEnv(), eos: a.eos, work: work, async: async && !a.eos}
	if !a.eos {
		c.offsets = a.inputOffsets(work)
		mergeOffsets(c.offsets, retry)
	}
	out, err := c.Commit(ctx)
	if err != nil {
		return err
	}
	switch out {
	case offsetsNotCommitted:
		return nil
	case txnAborted:
		a.log.Warn("transaction aborted (partitions were revoked, or this worker was fenced); going back to the last committed state")
		if err := a.resetToCommittedLocked(); err != nil {
			return err
		}
	case committed:
		a.dirtySrc = false
		offs := a.cl.CommittedOffsets()
		for _, pu := range a.purges {
			pu.committed(offs)
		}
		a.m.commits.Inc()
	}
	a.lastCommit = a.clock.Now()
	if !a.eos || a.closing.Load() {
		return nil
	}
	if err := a.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	return nil
}

// inputOffsets are the offsets an at-least-once commit of work commits:
// each task's input position and the repartition stage's source positions.
func (a *App) inputOffsets(work []*flushWork) offsetMap {
	offsets := make(offsetMap)
	add := func(sp state.SourcePartition, next int64) {
		if offsets[sp.Topic] == nil {
			offsets[sp.Topic] = make(map[int32]kgo.EpochOffset)
		}
		offsets[sp.Topic][sp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
	for _, w := range work {
		for sp, next := range w.t.InputPositions() {
			add(sp, next)
		}
	}
	for sp, next := range a.srcPos {
		add(sp, next)
	}
	return offsets
}

// commitEnv is the real environment of the commit: the group client (or
// transaction session) and the Pebble store.
func (a *App) commitEnv() *commitEnv {
	env := &commitEnv{
		produceMarkers:     a.produceMarkers,
		flush:              a.flushProducer,
		commitOffsets:      a.commitOffsets,
		commitOffsetsAsync: a.commitOffsetsAsync,
		endTxn:             a.endTxn,
		abortTxn:           a.abortTxn,
		writeStores:        a.writeStores,
		crash: func(at CrashPoint, flushed bool) bool {
			a.hooks.crash(at, flushed, a.log)
			return false
		},
		warn: a.warn.Warn,
	}
	if a.eos {
		env.endTimeout = a.cfg.SessionTimeout
	}
	return env
}

// commitOffsets commits offsets synchronously, failing on any partition's
// error.
func (a *App) commitOffsets(ctx context.Context, offsets offsetMap) error {
	var cerr error
	a.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		cerr = commitResponseErr(resp, err)
	})
	return cerr
}

// Asynchronous offset commits (at-least-once).
//
// The processing loop's periodic commit does not wait for the group
// coordinator to answer its offset commit (step 3): it writes Pebble and
// goes on processing meanwhile, which takes a network round trip off
// every commit's pause. This is safe because of what the commit has done
// before: the offsets are issued only after the markers they cover are
// acknowledged (so no committed offset is past state in the changelog),
// and Pebble ahead of the committed offsets is the CrashAfterMarker case:
// after a restart the input is read again from the older offset and
// skipped as already applied (engine.Task.seen). An offset commit that
// fails is kept (offsetRetry) and committed with the next commit, for the
// partitions still owned; franz-go keeps commits in order, and the commits
// before a hand-over (revoke) and at shutdown wait.

// offsetRetry holds the offsets of failed asynchronous commits until the
// next commit takes them.
type offsetRetry struct {
	mu   sync.Mutex
	offs offsetMap
}

// add keeps offs for the next commit (the highest offset per partition).
func (r *offsetRetry) add(offs offsetMap) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.offs == nil {
		r.offs = make(offsetMap)
	}
	mergeOffsets(r.offs, offs)
}

// take returns what add kept, and forgets it.
func (r *offsetRetry) take() offsetMap {
	r.mu.Lock()
	defer r.mu.Unlock()
	offs := r.offs
	r.offs = nil
	return offs
}

// drop forgets the offsets of partitions no longer owned.
func (r *offsetRetry) drop(parts map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(r.offs[topic], p)
		}
	}
}

// mergeOffsets adds src to dst, keeping the highest offset per partition.
func mergeOffsets(dst, src offsetMap) {
	for topic, ps := range src {
		for p, eo := range ps {
			if dst[topic] == nil {
				dst[topic] = make(map[int32]kgo.EpochOffset)
			}
			if cur, ok := dst[topic][p]; !ok || eo.Offset > cur.Offset {
				dst[topic][p] = eo
			}
		}
	}
}

// commitOffsetsAsync issues an offset commit and returns; a failure is
// logged and its offsets kept for the next commit.
func (a *App) commitOffsetsAsync(offsets offsetMap) {
	a.cl.CommitOffsets(context.Background(), offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err := commitResponseErr(resp, err); err != nil {
			a.offRetry.add(offsets)
			a.warn.Warn("asynchronous offset commit failed; the next commit commits these offsets again", "err", err)
		}
	})
}

// commitResponseErr is the error of an offset commit: the request's, or the
// first partition's.
func commitResponseErr(resp *kmsg.OffsetCommitResponse, err error) error {
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
				return fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, e)
			}
		}
	}
	return nil
}

// flushTasks is step 1 of both protocols: it produces the dirty rows of
// every changed task to its changelog partition and, in emit=update mode,
// the changed windows to the output.
func (a *App) flushTasks(ctx context.Context) []*flushWork {
	keys := a.sortedTaskKeys()
	// Step 1 runs per partition on the task goroutines (parallel.go): a
	// partition's tasks (one per rollup) are flushed in order by one
	// goroutine, as its records are processed; each task produces only to
	// its own changelog partition and to the output topic.
	done := make([][]*flushWork, len(keys))
	a.runParallel(len(keys), func(w *aggWorker, i int) {
		for _, t := range a.tasks[keys[i]] {
			if fw := a.flushTask(ctx, w, t); fw != nil {
				done[i] = append(done[i], fw)
			}
		}
	})
	var work []*flushWork
	for _, ws := range done {
		work = append(work, ws...)
	}
	return work
}

// flushTask is step 1 for one task on w: its changes, produced to its
// changelog partition, and (emit=update) its changed windows, produced to
// the output topic. Nil when it has nothing to flush, or failed (the
// commit fails then, through setProduceErr).
func (a *App) flushTask(ctx context.Context, w *aggWorker, t *task) *flushWork {
	p := t.partition
	fx := &w.rfx[t.r.idx]
	changes, ok, err := t.Flush(fx)
	if err != nil {
		a.setProduceErr(fmt.Errorf("flush %s partition %d: %w", t.r.p.spec.ChangelogTopic(), p, err))
		return nil
	}
	if !ok {
		return nil
	}
	slab := &w.encs[t.r.idx].slab
	for _, ch := range changes {
		rec := slab.record()
		rec.Topic, rec.Partition, rec.Value = t.r.changelog, p, ch.Value
		rec.Key = slab.keep(ch.AppendKey(slab.start(len(ch.Key.Key) + 32)))
		a.produce(rec)
	}
	a.applyWith(ctx, w.encs[t.r.idx], t, fx) // emit=update: the changed windows
	return &flushWork{t: t, changes: changes, early: t.r.from != nil}
}

// produceMarkers writes one commit marker per flushed task, recording the
// marker's offset when it is acknowledged.
func (a *App) produceMarkers(work []*flushWork) {
	ctx := context.Background() // a marker is produced, or fails the commit
	for _, w := range work {
		w.marker = -1
		cp := w.t.Checkpoint()
		a.cl.Produce(ctx, &kgo.Record{
			Topic:     w.t.r.p.spec.ChangelogTopic(),
			Partition: w.t.partition,
			Key:       state.MarkerKey(),
			Value:     cp.AppendBinary(nil),
		}, func(r *kgo.Record, err error) {
			if err != nil {
				a.setProduceErr(fmt.Errorf("produce commit marker to %s/%d: %w", r.Topic, r.Partition, err))
				return
			}
			w.marker = r.Offset
		})
	}
}

// writeStores is the last step of both protocols: each task's changes and
// its new checkpoint go to Pebble in one batch. With one goroutine every
// task's are in one batch; with several, each task's batch is built and
// committed on the task goroutines (Pebble applies concurrent batches in
// parallel). Either way a batch holds whole tasks only: a task's rows and
// its checkpoint are written together, and a crash between two tasks'
// batches leaves each consistent with its own changelog (Batch.Commit).
func (a *App) writeStores(work []*flushWork) error {
	if len(work) == 0 {
		return nil
	}
	if len(a.workers) <= 1 || len(work) == 1 {
		return a.writeStoresBatch(work)
	}
	errs := make([]error, len(work))
	a.runParallel(len(work), func(_ *aggWorker, i int) {
		errs[i] = a.writeStoresBatch(work[i : i+1])
	})
	return errors.Join(errs...)
}

// writeStoresBatch writes work's tasks' changes and checkpoints in one
// batch.
func (a *App) writeStoresBatch(work []*flushWork) error {
	b := a.db.NewBatch()
	cps := make([]state.Checkpoint, len(work))
	for i, w := range work {
		if w.marker < 0 {
			return errors.New("commit marker acknowledged without an offset")
		}
		cp := w.t.Checkpoint()
		cp.TopicID = w.t.cp.TopicID // learned by restore
		cp.ChangelogNext = w.marker + 1
		w.t.store.Stage(b, w.changes, cp)
		cps[i] = cp
	}
	if err := b.Commit(); err != nil {
		return err
	}
	for i, w := range work {
		w.t.cp = cps[i]
		w.t.Flushed()
	}
	return nil
}

func (a *App) flushProducer(ctx context.Context) error {
	if err := a.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush producer: %w", err)
	}
	return a.produceErr()
}
