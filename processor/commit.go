package processor

// The commit protocol (DESIGN.md, "The commit"), at-least-once mode.
//
// It runs every commit interval, before partitions are revoked, and at
// shutdown, always on the processing goroutine or with it stopped (a.mu):
//
//  1. Flush: for every task with changes, produce its dirty rows to its
//     changelog partition (tombstones for deleted windows) and, in
//     emit=update mode, the changed windows to the output topic. Outputs of
//     windows that closed since the last commit, late and dead-letter
//     records were produced as they happened. Wait until all are
//     acknowledged; any failure aborts the commit.
//  2. Produce one commit marker per task to its changelog partition, naming
//     the input position, stream time and upstream offsets the flush
//     reflects, and wait for it.
//  3. Commit the input offsets of everything processed.
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
//     applied (task.seen), so nothing counts twice.
//   - between 3 and 4: Pebble is behind the changelog; restore replays only
//     the tail after the Pebble checkpoint.
// The repartition stage is stateless: its offsets are committed in step 3
// after its produces were acknowledged in step 1. A crash before that
// re-sends records to the repartition topic; tasks skip them by their
// source offset (task.upstream), so they never double count.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/state/changelog"
)

// CrashPoint names a place inside the commit where a test can make the
// process die (EDDY_TEST_CRASH_AT), to prove recovery from each.
type CrashPoint string

const (
	CrashAfterFlush  CrashPoint = "after-flush"  // rows produced, no marker
	CrashAfterMarker CrashPoint = "after-marker" // marker produced, offsets not committed
	CrashAfterOffset CrashPoint = "after-offset" // offsets committed, Pebble not written
)

// crashPoint exits at the configured point of the crashAfter-th commit that
// flushes state (default 2, so that there is committed state to keep).
func (a *App) crashPoint(at CrashPoint, work []*flushWork) {
	if a.crashAt != at || len(work) == 0 {
		return
	}
	if a.crashCount++; a.crashCount >= a.crashAfter {
		a.log.Error("test crash point reached; exiting", "at", at)
		os.Exit(137)
	}
}

type flushWork struct {
	t       *task
	changes []state.Change
	marker  int64
}

func (a *App) commitLocked(ctx context.Context) error {
	work := a.flushTasks(ctx)
	if a.eos {
		return a.commitTxnLocked(ctx, work)
	}
	if len(work) == 0 && !a.dirtySrc {
		a.lastCommit = a.clock.Now()
		return nil
	}
	if err := a.flushProducer(ctx); err != nil {
		return err
	}
	a.crashPoint(CrashAfterFlush, work)

	// 2. Markers.
	a.produceMarkers(ctx, work)
	if err := a.flushProducer(ctx); err != nil {
		return err
	}
	a.crashPoint(CrashAfterMarker, work)

	// 3. Input offsets.
	offsets := make(map[string]map[int32]kgo.EpochOffset)
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
	if len(offsets) > 0 {
		var cerr error
		a.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
						cerr = fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, e)
					}
				}
			}
		})
		if cerr != nil {
			// Not fatal: nothing is lost. The rows stay dirty and are
			// flushed again, with a new marker, at the next commit.
			a.warn.Warn("offset commit failed; retrying at the next commit", "err", cerr)
			return nil
		}
	}
	a.dirtySrc = false
	a.crashPoint(CrashAfterOffset, work)

	// 4. Pebble.
	if err := a.writeStores(work); err != nil {
		return err
	}
	a.purge.committed(a.cl.CommittedOffsets())
	a.m.commits.Inc()
	a.lastCommit = a.clock.Now()
	return nil
}

// flushTasks is step 1 of both protocols: it produces the dirty rows of
// every changed task to its changelog partition and, in emit=update mode,
// the changed windows to the output.
func (a *App) flushTasks(ctx context.Context) []*flushWork {
	ids := make([]int32, 0, len(a.tasks))
	for p := range a.tasks {
		ids = append(ids, p)
	}
	slices.Sort(ids)
	var work []*flushWork
	for _, p := range ids {
		t := a.tasks[p]
		changes, ok, err := t.Flush(&a.fx)
		if err != nil {
			a.setProduceErr(fmt.Errorf("flush partition %d: %w", p, err))
			continue
		}
		if !ok {
			continue
		}
		var keys []byte // the changelog keys, one after the other
		for _, ch := range changes {
			start := len(keys)
			keys = ch.Key.AppendBinary(keys)
			a.produce(ctx, &kgo.Record{
				Topic:     a.p.spec.ChangelogTopic(),
				Partition: p,
				Key:       keys[start:len(keys):len(keys)],
				Value:     ch.Value,
			})
		}
		a.apply(ctx, t, &a.fx) // emit=update: the changed windows
		work = append(work, &flushWork{t: t, changes: changes})
	}
	return work
}

// produceMarkers writes one commit marker per flushed task, recording the
// marker's offset when it is acknowledged.
func (a *App) produceMarkers(ctx context.Context, work []*flushWork) {
	for _, w := range work {
		w.marker = -1
		cp := w.t.Checkpoint()
		a.cl.Produce(ctx, &kgo.Record{
			Topic:     a.p.spec.ChangelogTopic(),
			Partition: w.t.partition,
			Key:       state.MarkerKey,
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
// its new checkpoint go to Pebble in one batch.
func (a *App) writeStores(work []*flushWork) error {
	if len(work) == 0 {
		return nil
	}
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

// commitTxnLocked is the commit under exactly-once: everything produced
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
func (a *App) commitTxnLocked(ctx context.Context, work []*flushWork) error {
	// The session commits the polled position of every partition; the
	// records the partition group still buffers are not in the transaction,
	// so their partitions commit the offset of the first of them instead
	// (holdBack), and they stay buffered.
	held := a.pg.held()
	a.produceMarkers(ctx, work)
	a.crashPoint(CrashAfterFlush, work)
	a.crashPoint(CrashAfterMarker, work)
	// Bounded: End confirms group membership with a heartbeat, and after a
	// coordinator change the group cannot rejoin while this loop blocks
	// rebalancing. On timeout End aborts, the loop allows the rebalance,
	// and the work is redone from the committed state.
	//
	// Any error of End (a timeout, or the broker unreachable or restarting:
	// "unable to initialize a producer ID", NOT_COORDINATOR) is handled by
	// aborting, retried while it fails (abortTxn), and going back to the
	// committed state, unless the worker is shutting down. (The check of
	// ectx.Err() that used to guard this was always true, cancel having run,
	// so this was already the behaviour.) Known gap: if End's EndTxn commit
	// reached the broker but its answer did not come back, the transaction
	// may have committed; redoing it should then count nothing twice
	// (tasks skip source offsets they applied; not tested) but can emit a
	// final result a second time.
	ectx, cancel := context.WithTimeout(ctx, a.cfg.SessionTimeout)
	ectx = kgo.PreTxnCommitFnContext(ectx, func(req *kmsg.TxnOffsetCommitRequest) error {
		holdBack(req, held)
		return nil
	})
	// A record that failed to produce (forwarded, changelog, output) must
	// not be left out of a transaction that commits its input's offsets:
	// flush, and abort instead of committing if any produce failed.
	try := kgo.TryCommit
	if ferr := a.cl.Flush(ectx); ferr != nil || a.produceErr() != nil {
		a.log.Warn("a record of this transaction was not written; aborting it", "flush_err", ferr, "produce_err", a.produceErr())
		try = kgo.TryAbort
	}
	committed, err := a.sess.End(ectx, try)
	cancel()
	if err != nil && ctx.Err() == nil {
		a.log.Warn("transaction end failed or timed out; aborting it", "err", err)
		err = a.abortTxn(ctx)
		committed = false
	}
	if err != nil {
		return fmt.Errorf("end transaction: %w", err)
	}
	if !committed {
		a.log.Warn("transaction aborted (partitions were revoked, or this worker was fenced); going back to the last committed state")
		if err := a.resetToCommittedLocked(); err != nil {
			return err
		}
	} else {
		a.crashPoint(CrashAfterOffset, work)
		if err := a.writeStores(work); err != nil {
			return err
		}
		a.dirtySrc = false
		a.purge.committed(a.cl.CommittedOffsets())
		a.m.commits.Inc()
	}
	a.lastCommit = a.clock.Now()
	if a.closing.Load() {
		return nil
	}
	if err := a.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	return nil
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
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, a.cfg.SessionTimeout)
		_, err := a.sess.End(actx, kgo.TryAbort)
		cancel()
		if err == nil || ctx.Err() != nil || time.Since(start) > limit {
			return err
		}
		a.warn.Warn("transaction abort failed; trying again", "attempt", attempt, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 5*time.Second)
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
	for p, t := range a.tasks {
		t.store.DropCache()
		cp, _, err := t.store.Checkpoint()
		if err != nil {
			return fmt.Errorf("reset partition %d: %w", p, err)
		}
		nt := a.p.newTask(p, t.store, cp, now)
		if err := nt.rebuildIndex(); err != nil {
			return fmt.Errorf("reset partition %d: %w", p, err)
		}
		a.tasks[p] = nt
	}
	a.pg.rewind(a.cl.CommittedOffsets(), now)
	clear(a.srcPos)
	a.dirtySrc = false
	a.prodMu.Lock()
	a.prodErr = nil
	a.prodMu.Unlock()
	return nil
}

func (a *App) flushProducer(ctx context.Context) error {
	if err := a.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush producer: %w", err)
	}
	return a.produceErr()
}

// onAssigned restores the state of newly assigned aggregation partitions
// before any of their records are processed (franz-go runs it before
// fetching them, serialized with polling).
func (a *App) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// cl, not a.cl: the group may assign before kgo.NewClient has returned
	// and a.cl is set.
	if n := countParts(assigned); n > 0 { // cooperative rebalances also call with none
		a.log.Info("partitions assigned", "count", n, "partitions", fmtParts(assigned), "tasks_before", len(a.tasks))
	}
	a.learnSourcePositions(ctx, cl, assigned)
	a.watch.assigned(ctx, cl, assigned)
	var parts []int32
	for topic, ps := range assigned {
		if !a.isAggInput(topic) {
			continue
		}
		for _, p := range ps {
			if _, ok := a.tasks[p]; !ok && !slices.Contains(parts, p) {
				parts = append(parts, p)
			}
		}
	}
	if len(parts) == 0 {
		if !a.closing.Load() {
			a.ready.Store(true) // in the group, nothing to restore
			a.m.ready.Set(1)
		}
		return
	}
	slices.Sort(parts)
	a.ready.Store(false)
	a.m.ready.Set(0)
	spec := a.p.spec
	restoreBegan := time.Now()
	a.log.Info("restoring state", "partitions", len(parts), "changelog", spec.ChangelogTopic(), "of", fmt.Sprint(parts))
	type restored struct {
		ts  *state.TaskStore
		t   *task
		res changelog.RestoreResult
		err error
	}
	done := make([]restored, len(parts))
	// Up to len(a.restorers) partitions restore at once: partition i uses
	// restorer i mod n, the restorers in turn.
	var wg sync.WaitGroup
	for w, r := range a.restorers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(parts); i += len(a.restorers) {
				p := parts[i]
				ts := a.db.TaskStore(spec.Store, p, a.p.aggSpecs, a.cfg.CacheRows)
				label := strconv.Itoa(int(p))
				r.Progress = func(_ string, _ int32, done, total int64) {
					a.m.restoreDone.WithLabelValues(spec.Store, label).Set(float64(done))
					a.m.restoreTotal.WithLabelValues(spec.Store, label).Set(float64(total))
				}
				t, res, err := a.restoreTask(ctx, r, p, ts)
				if errors.Is(err, state.ErrCorruptState) {
					// Only damage is a reason to wipe: a broker or network
					// failure is reported as it is (a.fail below).
					t, res, err = a.rebuildTask(ctx, r, p, ts, "local state of the partition is damaged", err)
				}
				done[i] = restored{ts: ts, t: t, res: res, err: err}
			}
		}()
	}
	wg.Wait()
	// A restore reaches the changelog's end as measured when it began;
	// the group's committed offsets must not be past what it restored
	// (a transaction whose offsets were visible before its changelog
	// markers were written). Partitions that are behind restore again,
	// for up to restoreBehindLimit.
	began := time.Now()
	for round := 1; ; round++ {
		committed, err := kadm.NewClient(cl).FetchOffsets(ctx, a.p.spec.GroupID())
		if err != nil {
			a.log.Warn("could not read the group's committed offsets to check restored state against them", "err", err)
			break
		}
		var behind []int
		for i, p := range parts {
			if done[i].err != nil {
				continue
			}
			if why := a.restoredBehind(ctx, p, done[i].res.Checkpoint, committed); why != "" {
				if time.Since(began) > restoreBehindLimit {
					a.fail(fmt.Errorf("%w: partition %d after %s: %s", ErrRestoreBehind, p, time.Since(began).Round(time.Second), why))
					return
				}
				a.log.Warn("restored state is behind the group's committed offset; restoring again", "partition", p, "round", round, "why", why)
				behind = append(behind, i)
			}
		}
		if len(behind) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		for _, i := range behind {
			d := &done[i]
			t, res, err := a.restoreTask(ctx, a.restorers[0], parts[i], d.ts)
			res.Records += d.res.Records
			d.t, d.res, d.err = t, res, err
		}
	}
	for i, p := range parts {
		d := done[i]
		if d.err != nil {
			a.fail(d.err)
			return
		}
		t, res := d.t, d.res
		if a.p.eng.HasAlerts() {
			if err := t.LoadAlerts(); err != nil {
				if !errors.Is(err, state.ErrCorruptState) {
					a.fail(fmt.Errorf("load alert state of partition %d: %w", p, err))
					return
				}
				if t, res, err = a.rebuildTask(ctx, a.restorers[0], p, d.ts, "alert state unreadable", err); err == nil {
					if err = t.LoadAlerts(); err != nil {
						err = fmt.Errorf("load alert state of partition %d: %w", p, err)
					}
				}
				if err != nil {
					a.fail(err)
					return
				}
			}
		}
		a.m.restored.Add(float64(res.Records))
		a.tasks[p] = t
		if a.am != nil {
			for _, al := range t.FiringAlerts() {
				a.am.send(p, al, false)
			}
		}
		a.log.Info("partition restored", "partition", p, "records", res.Records, "from_scratch", res.FromScratch,
			"reason", res.Reason, "discarded_unfinished_flush", res.Discarded, "gap_at_tail", res.GapAtTail, "open_windows", t.OpenWindows(),
			"took", res.Took.Round(time.Millisecond))
	}
	a.m.tasks.Set(float64(len(a.tasks)))
	var total int64
	for _, d := range done {
		total += d.res.Records
	}
	a.log.Info("state restored; processing", "partitions", len(parts), "records", total,
		"took", time.Since(restoreBegan).Round(time.Millisecond), "tasks", len(a.tasks))
	if !a.closing.Load() {
		a.ready.Store(true)
		a.m.ready.Set(1)
	}
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

// restoreTask brings one partition's store up to its changelog and builds
// its task's window index (not its alert state: see alertEngine.load).
// Tasks restore concurrently: it touches only its own task and store.
func (a *App) restoreTask(ctx context.Context, r *changelog.Restorer, p int32, ts *state.TaskStore) (*task, changelog.RestoreResult, error) {
	res, err := r.Restore(ctx, a.p.spec.ChangelogTopic(), p, ts)
	if err != nil {
		return nil, res, err
	}
	t := a.p.newTask(p, ts, res.Checkpoint, a.clock.Now())
	// Rows just rebuilt from the changelog need no check against local
	// damage; rows kept from before do.
	if err := t.Rebuild(!res.FromScratch); err != nil {
		return nil, res, fmt.Errorf("index restored state: %w", err)
	}
	return t, res, nil
}

// rebuildTask wipes a partition's local state that could not be read
// (what, cause) and restores it again from the changelog, once: a damaged
// Pebble file is not a reason to stop.
func (a *App) rebuildTask(ctx context.Context, r *changelog.Restorer, p int32, ts *state.TaskStore, what string, cause error) (*task, changelog.RestoreResult, error) {
	a.log.Warn(what+"; wiping the partition's local state and rebuilding it from the changelog", "partition", p, "err", cause)
	if err := ts.Wipe(); err != nil {
		return nil, changelog.RestoreResult{}, fmt.Errorf("wipe damaged state of partition %d: %w (after %w)", p, err, cause)
	}
	t, res, err := a.restoreTask(ctx, r, p, ts)
	if err != nil {
		return nil, res, fmt.Errorf("restore %s partition %d: %w", a.p.spec.ChangelogTopic(), p, err)
	}
	return t, res, nil
}

// restoredBehind says why a partition's restored checkpoint cp is behind
// the group's committed offset of one of its input partitions, or "" when
// it is not (or cannot tell: nothing restored names a position, as after
// eddy reset). Records below the committed offset are never read again,
// so state restored short of it would miss them for good.
//
// The committed offset may legitimately be past the restored position by
// records that hold no data for the task (transaction markers of a
// transactional input, aborted records): it is behind only when a
// committed data record lies between the two.
func (a *App) restoredBehind(ctx context.Context, p int32, cp state.Checkpoint, committed kadm.OffsetResponses) string {
	inputs := a.aggInputTopics()
	for _, topic := range inputs {
		c, ok := committed.Lookup(topic, p)
		if !ok || c.Err != nil || c.At < 0 {
			continue
		}
		next, known := int64(0), false
		if u, ok := cp.Upstream[state.SourcePartition{Topic: topic, Partition: p}]; ok {
			next, known = u+1, true
		}
		if len(inputs) == 1 && cp.InputNext > 0 {
			next, known = max(next, cp.InputNext), true
		}
		if !known || c.At <= next {
			continue
		}
		found, ok := a.restorers[0].DataBetween(ctx, topic, p, next, c.At, 10*time.Second)
		if !ok {
			a.log.Warn("could not tell whether restored state is behind the committed offset", "topic", topic, "partition", p,
				"restored_next", next, "committed", c.At)
			continue
		}
		if found {
			return fmt.Sprintf("%s/%d committed at %d, restored state reflects input up to %d", topic, p, c.At, next)
		}
	}
	return ""
}

// ErrRestoreBehind: a partition's restored state stays behind the group's
// committed offset (restoreBehindLimit): the changelog lacks what the group
// committed. The worker stops rather than process on with state that
// misses records.
var ErrRestoreBehind = errors.New("restored state is behind the group's committed offset")

// restoreBehindLimit bounds how long onAssigned restores again a partition
// whose state is behind the committed offset (a changelog transaction's
// markers not yet written) before it fails.
const restoreBehindLimit = time.Minute

// restoreParallelism is how many partitions restore at once.
const restoreParallelism = 4

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
func (a *App) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
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
func (a *App) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := countParts(lost); n > 0 {
		a.log.Warn("partitions lost (this worker left or was removed from the group); their uncommitted work is redone by their next owner",
			"count", n, "partitions", fmtParts(lost))
	}
	a.dropLocked(lost)
}

func (a *App) dropLocked(parts map[string][]int32) {
	for topic, ps := range parts {
		for _, p := range ps {
			delete(a.srcPos, state.SourcePartition{Topic: topic, Partition: p})
			a.pg.drop(state.SourcePartition{Topic: topic, Partition: p})
			if a.isAggInput(topic) {
				if t, ok := a.tasks[p]; ok {
					t.store.DropCache()
					delete(a.tasks, p)
				}
				if a.am != nil {
					a.am.drop(p)
				}
			}
		}
	}
	a.m.tasks.Set(float64(len(a.tasks)))
}

// learnSourcePositions tells the partition group where each newly assigned
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
