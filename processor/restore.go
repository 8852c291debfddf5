package processor

// Restore as a task state.
//
// A newly assigned aggregation partition is not a task until its state is
// restored from its changelog. The assignment callback (onAssigned) only
// registers it as restoring, pauses its fetches and starts its restore job,
// and returns: the group's rebalance never waits for a restore. (franz-go
// asks its callbacks to be quick: a member that does not rejoin within the
// rebalance timeout, because a callback still runs, is removed from the
// group and loses its partitions.) The job runs on a goroutine of its own,
// owned by the App (restoreSet.wg); it brings the partition's Pebble store
// up to the changelog with a restorer from the pool, builds the task and
// loads its alert state, and hands the task to the processing loop. The
// loop (installRestored, under a.mu) makes it a task, resumes its fetches,
// and turns the worker ready once no partition is restoring.
//
// Invariants:
//   - a partition in restoreSet.jobs has no task and its fetches are
//     paused: none of its records is processed, and no offset of it is
//     committed, before its state is restored;
//   - a job touches only its own partition's store and task (the task is
//     not in a.tasks until the loop installs it);
//   - one job at a time writes a partition's store: a job for a partition
//     assigned again waits until the previous, canceled job of the same
//     partition has ended (restoreJob.prev), and until a standby catch-up
//     of it has stopped (restoreJob.standby, standby.go);
//   - a revoked or lost partition's job is canceled and its result is
//     dropped: the loop installs a result only from the job that
//     restoreSet.jobs names for its partition.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/gcboost"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/state/changelog"
)

// restoreJob is the restore of one partition. The fields below done are
// written by its goroutine before it sends the job on restoreSet.done, and
// read by the loop after it receives it.
type restoreJob struct {
	k       taskKey // the stage and partition whose tasks it restores
	p       int32
	ctx     context.Context
	cancel  context.CancelFunc
	prev    *restoreJob     // the partition's previous job, if any: wait for it
	standby <-chan struct{} // closed when no standby catch-up writes the store (standby.go)
	done    chan struct{}   // closed when the goroutine has ended

	ts  []*task // one per rollup of the stage
	res changelog.RestoreResult
	err error
}

// restoreSet is the restore state of the App's partitions.
type restoreSet struct {
	// Guarded by a.mu.
	jobs    map[taskKey]*restoreJob // partitions restoring, by stage and partition
	last    map[taskKey]*restoreJob // the last job of each partition, ended or not (restoreJob.prev)
	joined  bool                    // the group has assigned partitions at least once
	began   time.Time               // when the partitions now restoring began to, for the log
	parts   int                     // partitions restored since began
	records int64                   // records restored since began
	// gcRelease ends the hold on Go's collector taken while any
	// partition restores (gcboost: a restore builds a large index fast);
	// nil when none does. See holdGC.
	gcRelease func()

	// Set by Run before the group is joined, then read-only.
	ctx  context.Context // canceled when Run ends: every job ends
	pool chan *changelog.Restorer

	done chan *restoreJob // restored partitions, to the loop
	wg   sync.WaitGroup   // running jobs
}

func newRestoreSet() restoreSet {
	return restoreSet{
		jobs: make(map[taskKey]*restoreJob),
		last: make(map[taskKey]*restoreJob),
		done: make(chan *restoreJob),
	}
}

// startRestoresLocked registers the newly assigned aggregation partitions
// of assigned as restoring, pauses their fetches and starts their jobs.
// It does no I/O: it runs in the assignment callback.
func (a *App) startRestoresLocked(cl *kgo.Client, assigned map[string][]int32) {
	rs := &a.rst
	rs.joined = true
	var parts []taskKey
	for topic, ps := range assigned {
		st := a.stageOf(topic)
		if st == nil {
			continue
		}
		for _, p := range ps {
			k := taskKey{st.idx, p}
			_, isTask := a.tasks[k]
			_, restoring := rs.jobs[k]
			if !isTask && !restoring && !slices.Contains(parts, k) {
				parts = append(parts, k)
			}
		}
	}
	if len(parts) == 0 {
		a.setReadyLocked()
		return
	}
	slices.SortFunc(parts, compareTaskKeys)
	cl.PauseFetchPartitions(a.aggPartitions(parts))
	if len(rs.jobs) == 0 {
		rs.began, rs.parts, rs.records = time.Now(), 0, 0
	}
	a.ready.Store(false)
	a.m.ready.Set(0)
	a.log.Info("restoring state", "partitions", len(parts), "changelogs", a.changelogTopics(), "of", fmtTaskKeys(parts))
	for _, k := range parts {
		ctx, cancel := context.WithCancel(rs.ctx)
		j := &restoreJob{k: k, p: k.p, ctx: ctx, cancel: cancel, prev: rs.last[k], standby: a.sb.claim(k), done: make(chan struct{})}
		rs.jobs[k], rs.last[k] = j, j
		rs.wg.Add(1)
		go a.runRestore(cl, j)
	}
	rs.holdGC()
}

// restoringLocked says whether topic/p is paused because its partition is
// restoring: other pauses (registry_wait.go) must not resume it.
func (a *App) restoringLocked(topic string, p int32) bool {
	st := a.stageOf(topic)
	if st == nil {
		return false
	}
	_, ok := a.rst.jobs[taskKey{st.idx, p}]
	return ok
}

// aggPartitions are the input partitions of the tasks of parts.
func (a *App) aggPartitions(parts []taskKey) map[string][]int32 {
	m := make(map[string][]int32)
	for _, k := range parts {
		for _, topic := range a.stages[k.stage].topics {
			m[topic] = append(m[topic], k.p)
		}
	}
	return m
}

// cancelRestoresLocked abandons the restores of the partitions in parts
// (revoked or lost) and resumes their fetches, so that the partitions are
// not paused should they come back. Their jobs end on their own; a later
// job of the same partition waits for them.
func (a *App) cancelRestoresLocked(cl *kgo.Client, parts map[string][]int32) {
	var canceled []taskKey
	for topic, ps := range parts {
		st := a.stageOf(topic)
		if st == nil {
			continue
		}
		for _, p := range ps {
			k := taskKey{st.idx, p}
			if j, ok := a.rst.jobs[k]; ok {
				j.cancel()
				delete(a.rst.jobs, k)
				canceled = append(canceled, k)
			}
		}
	}
	if len(canceled) == 0 {
		return
	}
	a.rst.holdGC()
	slices.SortFunc(canceled, compareTaskKeys)
	canceled = slices.Compact(canceled)
	a.log.Info("restore abandoned: partitions revoked while restoring", "partitions", fmtTaskKeys(canceled))
	cl.ResumeFetchPartitions(a.aggPartitions(canceled))
	if len(a.rst.jobs) == 0 {
		a.setReadyLocked()
	}
}

// stopRestores cancels every job and waits for them to end. Run calls it
// after the group client is closed, before the store and the restorers'
// clients are.
func (a *App) stopRestores(cancel context.CancelFunc) {
	cancel()
	a.rst.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rst.releaseGC()
}

// holdGC holds Go's collector at gcboost.Percent while partitions
// restore, and releases it when none does (a.mu held). Restoring a
// million windows spends about 40% of its CPU in the collector at the
// default GOGC, 10% held (BENCHMARKS.md, issue 17).
func (rs *restoreSet) holdGC() {
	switch restoring := len(rs.jobs) > 0; {
	case restoring && rs.gcRelease == nil:
		rs.gcRelease = gcboost.Hold()
	case !restoring:
		rs.releaseGC()
	}
}

// releaseGC ends the hold holdGC took, if any (a.mu held).
func (rs *restoreSet) releaseGC() {
	if rs.gcRelease != nil {
		rs.gcRelease()
		rs.gcRelease = nil
	}
}

// runRestore is the goroutine of job j.
func (a *App) runRestore(cl *kgo.Client, j *restoreJob) {
	defer a.rst.wg.Done()
	defer close(j.done)
	if j.prev != nil {
		select {
		case <-j.prev.done:
		case <-j.ctx.Done():
			return
		}
	}
	select { // a standby catch-up of the partition, canceled by the claim
	case <-j.standby:
	case <-j.ctx.Done():
		return
	}
	var r *changelog.Restorer
	select {
	case r = <-a.rst.pool:
	case <-j.ctx.Done():
		return
	}
	j.ts, j.res, j.err = a.restoreStagePartition(j.ctx, cl, r, j.k)
	a.rst.pool <- r
	if j.ctx.Err() != nil {
		return // abandoned: nobody wants the result
	}
	select {
	case a.rst.done <- j:
	case <-j.ctx.Done():
	}
}

// restoreStagePartition restores the tasks of partition k.p of stage
// k.stage, one rollup's after the other, and adds up what they restored.
func (a *App) restoreStagePartition(ctx context.Context, cl *kgo.Client, r *changelog.Restorer, k taskKey) ([]*task, changelog.RestoreResult, error) {
	st := a.stages[k.stage]
	ts := make([]*task, len(st.rollups))
	var sum changelog.RestoreResult
	for i, ro := range st.rollups {
		t, res, err := a.restorePartition(ctx, cl, r, ro, k.p)
		if err != nil {
			return nil, sum, err
		}
		ts[i] = t
		sum.Records += res.Records
		sum.Took += res.Took
		sum.FromScratch = sum.FromScratch || res.FromScratch
		sum.Discarded += res.Discarded
		sum.GapAtTail += res.GapAtTail
		if res.Reason != "" {
			sum.Reason = res.Reason
		}
	}
	return ts, sum, nil
}

// restorePartition restores the store of rollup ro's partition p and
// builds its task with its alert state: it wipes and rebuilds damaged
// local state, and restores again while the restored state is behind the
// group's committed offset (for up to restoreBehindLimit).
func (a *App) restorePartition(ctx context.Context, cl *kgo.Client, r *changelog.Restorer, ro *rollup, p int32) (*task, changelog.RestoreResult, error) {
	spec := ro.p.spec
	ts := a.db.TaskStore(spec.Store, p, ro.p.aggSpecs, a.cfg.CacheRows)
	label := strconv.Itoa(int(p))
	r.Progress = func(_ string, _ int32, done, total int64) {
		a.m.restoreDone.WithLabelValues(spec.Store, label).Set(float64(done))
		a.m.restoreTotal.WithLabelValues(spec.Store, label).Set(float64(total))
		if a.hooks.restorePause > 0 {
			time.Sleep(a.hooks.restorePause) // process-level tests only (testhooks.go)
		}
	}
	t, res, err := a.restoreTask(ctx, r, ro, p, ts)
	if errors.Is(err, state.ErrCorruptState) {
		// Only damage is a reason to wipe: a broker or network failure is
		// reported as it is.
		t, res, err = a.rebuildTask(ctx, r, ro, p, ts, "local state of the partition is damaged", err)
	}
	if err != nil {
		return nil, res, err
	}
	// A restore reaches the changelog's end as measured when it began; the
	// group's committed offsets must not be past what it restored (a
	// transaction whose offsets were visible before its changelog markers
	// were written). A partition that is behind restores again.
	began := time.Now()
	for round := 1; ; round++ {
		committed, err := kadm.NewClient(cl).FetchOffsets(ctx, spec.GroupID())
		if err != nil {
			if ctx.Err() != nil {
				return nil, res, ctx.Err()
			}
			a.log.Warn("could not read the group's committed offsets to check restored state against them", "err", err)
			break
		}
		why := a.restoredBehind(ctx, r, ro, p, res.Checkpoint, committed)
		if why == "" {
			break
		}
		if time.Since(began) > restoreBehindLimit {
			return nil, res, fmt.Errorf("%w: partition %d after %s: %s", ErrRestoreBehind, p, time.Since(began).Round(time.Second), why)
		}
		a.log.Warn("restored state is behind the group's committed offset; restoring again", "partition", p, "round", round, "why", why)
		tm := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			tm.Stop()
			return nil, res, ctx.Err()
		case <-tm.C:
		}
		prev := res.Records
		if t, res, err = a.restoreTask(ctx, r, ro, p, ts); err != nil {
			return nil, res, err
		}
		res.Records += prev
	}
	// The task is not in a.tasks yet: loading its alert state here, off the
	// processing loop, reads only the pipeline's immutable rules and writes
	// only this task and its store.
	if ro.p.eng.HasAlerts() {
		if err := t.LoadAlerts(); err != nil {
			if !errors.Is(err, state.ErrCorruptState) {
				return nil, res, fmt.Errorf("load alert state of partition %d: %w", p, err)
			}
			if t, res, err = a.rebuildTask(ctx, r, ro, p, ts, "alert state unreadable", err); err != nil {
				return nil, res, err
			}
			if err = t.LoadAlerts(); err != nil {
				return nil, res, fmt.Errorf("load alert state of partition %d: %w", p, err)
			}
		}
	}
	return t, res, nil
}

// installRestoredLocked makes tasks of the partitions whose restore has
// ended, resumes their fetches, and turns the worker ready when none is
// left restoring. A failed restore is returned: the worker stops.
func (a *App) installRestoredLocked() error {
	for {
		var j *restoreJob
		select {
		case j = <-a.rst.done:
		default:
			return nil
		}
		if a.rst.jobs[j.k] != j {
			continue // revoked while its result was on the way
		}
		delete(a.rst.jobs, j.k)
		a.rst.holdGC()
		if j.err != nil {
			return fmt.Errorf("restore partition %d: %w", j.p, j.err)
		}
		ts, res := j.ts, j.res
		a.m.restored.Add(float64(res.Records))
		a.tasks[j.k] = ts
		open := 0
		for _, t := range ts {
			open += t.OpenWindows()
			if a.am != nil {
				for _, al := range t.FiringAlerts() {
					a.am.send(j.k.owner(), al, false)
				}
			}
		}
		a.cl.ResumeFetchPartitions(a.aggPartitions([]taskKey{j.k}))
		a.rst.parts++
		a.rst.records += res.Records
		a.m.tasks.Set(float64(a.taskCount()))
		a.log.Info("partition restored", "partition", j.p, "topic", a.stages[j.k.stage].topics[0], "records", res.Records, "from_scratch", res.FromScratch,
			"reason", res.Reason, "discarded_unfinished_flush", res.Discarded, "gap_at_tail", res.GapAtTail, "open_windows", open,
			"took", res.Took.Round(time.Millisecond))
		if len(a.rst.jobs) == 0 {
			a.log.Info("state restored; processing", "partitions", a.rst.parts, "records", a.rst.records,
				"took", time.Since(a.rst.began).Round(time.Millisecond), "tasks", a.taskCount())
			a.setReadyLocked()
		}
	}
}

// setReadyLocked turns the worker ready when it is in the group, restores
// nothing and is not shutting down.
func (a *App) setReadyLocked() {
	if a.rst.joined && len(a.rst.jobs) == 0 && !a.closing.Load() {
		a.ready.Store(true)
		a.m.ready.Set(1)
	}
}

// restoreTask brings one partition's store up to its changelog and builds
// its task's window index (not its alert state: see engine.Task.LoadAlerts).
// Tasks restore concurrently: it touches only its own task and store.
func (a *App) restoreTask(ctx context.Context, r *changelog.Restorer, ro *rollup, p int32, ts *state.TaskStore) (*task, changelog.RestoreResult, error) {
	ts.RecordRestored() // for Rebuild, should the restore start from scratch
	res, err := r.Restore(ctx, ro.p.spec.ChangelogTopic(), p, ts)
	if err != nil {
		return nil, res, err
	}
	t := a.newStageTask(ro, p, ts, res.Checkpoint, a.clock.Now())
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
func (a *App) rebuildTask(ctx context.Context, r *changelog.Restorer, ro *rollup, p int32, ts *state.TaskStore, what string, cause error) (*task, changelog.RestoreResult, error) {
	a.log.Warn(what+"; wiping the partition's local state and rebuilding it from the changelog", "partition", p, "err", cause)
	if err := ts.Wipe(); err != nil {
		return nil, changelog.RestoreResult{}, fmt.Errorf("wipe damaged state of partition %d: %w (after %w)", p, err, cause)
	}
	t, res, err := a.restoreTask(ctx, r, ro, p, ts)
	if err != nil {
		return nil, res, fmt.Errorf("restore %s partition %d: %w", ro.p.spec.ChangelogTopic(), p, err)
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
func (a *App) restoredBehind(ctx context.Context, r *changelog.Restorer, ro *rollup, p int32, cp state.Checkpoint, committed kadm.OffsetResponses) string {
	if ro.from != nil {
		return "" // reads no input: its position is the task it follows (commit.go, pendingCommit.markers)
	}
	inputs := ro.stage.topics
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
		found, ok := r.DataBetween(ctx, topic, p, next, c.At, 10*time.Second)
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

// restoreBehindLimit bounds how long a restore job restores again a partition
// whose state is behind the committed offset (a changelog transaction's
// markers not yet written) before it fails.
const restoreBehindLimit = time.Minute

// restoreParallelism is how many partitions restore at once.
const restoreParallelism = 4

// restoreFetchBytes is what a restorer fetches per partition and request.
const restoreFetchBytes = 8 << 20
