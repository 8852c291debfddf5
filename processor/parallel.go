package processor

// Parallel tasks (issue 17).
//
// A worker processes its aggregation tasks on up to Config.Parallelism
// goroutines (GOMAXPROCS by default). The processing loop's turn (Run)
// is still one step holding a.mu:
//
//  1. processFetches groups the poll's records of the aggregation input by
//     partition, in fetch order: one job per task.
//  2. The jobs run on min(Parallelism, jobs) goroutines; a goroutine takes
//     a whole job, so a task is owned by one goroutine for the turn and
//     its records go through the engine in offset order. Meanwhile the
//     loop goroutine itself runs the repartition stage (decode, then the
//     partition group's ordered merge and forwardSource), which stays
//     sequential.
//  3. The loop waits for every job. Only then does it act on what they
//     returned (a record waiting for the schema registry stalls its
//     partition, registry_wait.go; any other error stops the worker),
//     merge the goroutines' field counts, punctuate and maybe commit.
//
// So a commit never sees a task half-way through a job: every task's
// state is as of the same point of the turn, and the commit protocol
// (commit.go, txn.go: one transaction per commit under exactly-once)
// is unchanged. Its per-task steps run on the same goroutines
// (runParallel): step 1, each partition's tasks flushed and their
// changelog rows and results produced (flushTasks), and step 4, each
// task's Pebble batch (writeStores); the steps that wait on Kafka stay
// on the loop.
//
// What a job touches: its task (its own), the goroutine's aggWorker
// (engine effects, JSON result encoder, watermark and field-count
// scratch), and shared things that are safe for concurrent use: the
// client's Produce, the Prometheus metrics, the rate-limited log, the
// retention guard, the Alertmanager forwarder, the schema decoders and
// encoders and the lookup tables (each locked or pooled), the
// expressions (pooled VMs), the read-only pipeline and topic limits, and
// the Clock (which must be safe for concurrent use). The tasks map is
// only read: assignment changes it under a.mu, between turns.

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// aggWorker is the scratch of one goroutine that processes aggregation
// records: owned by that goroutine for a turn.
type aggWorker struct {
	rfx    []engine.Effects // per rollup (rollup.idx)
	encs   []*resultEncoder // JSON results, per rollup (pipeline.resEnc for the loop's own)
	wmIn   []engine.Watermark
	fields fieldObs
	// decoded is the map processAgg decodes each record into (reused).
	decoded map[string]any
	loop    bool // the processing loop's own (retryStalled)
	// clock and clockLeft: the wall clock as now last read it, for
	// clockLeft more records.
	clock     time.Time
	clockLeft int
}

// clockEvery is how many records of a job share one reading of the wall
// clock: they are processed within a millisecond or so, and reading it
// per record was 2.5% of a count's CPU.
const clockEvery = 64

// now is the wall clock for the next record on w: read again every
// clockEvery records, and at the start of every job (resetClock).
func (w *aggWorker) now(a *App) time.Time {
	if w.clockLeft <= 0 {
		w.clock, w.clockLeft = a.clock.Now(), clockEvery
	}
	w.clockLeft--
	return w.clock
}

// resetClock makes the next now read the wall clock.
func (w *aggWorker) resetClock() { w.clockLeft = 0 }

// aggJob is one task's records of a poll, in order, and what processing
// them returned: err from the record at done (then nothing from done on
// was applied when err is undecided), else done == len(recs).
type aggJob struct {
	sp   state.SourcePartition
	recs []*kgo.Record
	hwm  int64
	done int
	err  error
}

// parallelism resolves Config.Parallelism: GOMAXPROCS when it is 0 or
// less. Every pipeline's tasks can run at the same time (the engine's
// shared Pipeline is immutable; alert rules keep their expression
// environment per task: TestThresholdRulesConcurrentTasks); why is kept
// for a pipeline that one day cannot, and is "" today.
func parallelism(_ *topology.Spec, n int) (int, string) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return n, ""
}

// A poll's records come partition after partition, in the order of the
// fetch they were in: with the client's default of 1 MiB per partition
// in a fetch, a poll of maxPollRecords small records is one partition's,
// one job, and the other goroutines have nothing to do. With several
// goroutines the loop polls maxPollRecords per goroutine, and fetches
// take parallelFetchPartitionBytes of each partition, so a poll spans
// several partitions.
const parallelFetchPartitionBytes = 128 << 10

// pollRecords is how many records one turn polls.
func (a *App) pollRecords() int { return maxPollRecords * len(a.workers) }

// fetchPartitionBytes is the most bytes of one partition a fetch returns.
func (a *App) fetchPartitionBytes() int32 {
	if len(a.workers) > 1 {
		return parallelFetchPartitionBytes
	}
	return 1 << 20 // franz-go's default
}

// newAggWorkers makes the scratch of n goroutines and of the loop.
func newAggWorkers(rs []*rollup, n int) (loop *aggWorker, ws []*aggWorker) {
	mk := func(clone bool) *aggWorker {
		w := &aggWorker{rfx: make([]engine.Effects, len(rs)), encs: make([]*resultEncoder, len(rs))}
		for i, r := range rs {
			w.encs[i] = r.p.resEnc
			if clone {
				w.encs[i] = r.p.resEnc.clone()
			}
		}
		return w
	}
	ws = make([]*aggWorker, n)
	for i := range ws {
		ws[i] = mk(true)
	}
	loop = mk(false)
	loop.loop = true
	return loop, ws
}

// runAggJobs starts processing jobs and returns the function that waits
// until all are done. With one goroutine allowed, or one job, they run
// here before it returns.
func (a *App) runAggJobs(ctx context.Context, jobs []*aggJob) (wait func()) {
	return a.startParallel(len(jobs), a.workers[0], func(w *aggWorker, i int) {
		a.runAggJob(ctx, w, jobs[i])
	})
}

// runParallel calls fn(w, i) for every i below n, on up to
// len(a.workers) goroutines (each with its own scratch w), and returns
// when all calls have. With one goroutine allowed, or n at most 1, the
// calls run here, on the loop's scratch.
func (a *App) runParallel(n int, fn func(w *aggWorker, i int)) {
	a.startParallel(n, a.loopW, fn)()
}

// startParallel starts calling fn(w, i) for every i below n on up to
// len(a.workers) goroutines, each taking the next i until none is left,
// and returns the function that waits for them. With one goroutine
// allowed, or n at most 1, the calls run here on seq before it returns.
func (a *App) startParallel(n int, seq *aggWorker, fn func(w *aggWorker, i int)) (wait func()) {
	g := min(len(a.workers), n)
	if g <= 1 {
		for i := range n {
			fn(seq, i)
		}
		return func() {}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	wg.Add(g)
	for k := range g {
		w := a.workers[k]
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(w, i)
			}
		}()
	}
	return wg.Wait
}

// runAggJob processes one task's records of the turn on w, stopping at
// the first error.
func (a *App) runAggJob(ctx context.Context, w *aggWorker, j *aggJob) {
	if a.aggProbe != nil {
		a.aggProbe(j.sp.Partition)
	}
	w.resetClock()
	for i, rec := range j.recs {
		if err := a.processAgg(ctx, w, rec); err != nil {
			j.done, j.err = i, err
			return
		}
	}
	j.done = len(j.recs)
}

// addAggJob adds the records of fp to the turn's job of their partition.
func (a *App) addAggJob(byPart map[state.SourcePartition]*aggJob, jobs []*aggJob, sp state.SourcePartition, fp kgo.FetchTopicPartition) []*aggJob {
	if j := byPart[sp]; j != nil {
		j.recs = append(slices.Clip(j.recs), fp.Records...)
		j.hwm = fp.HighWatermark
		return jobs
	}
	j := &aggJob{sp: sp, recs: fp.Records, hwm: fp.HighWatermark}
	byPart[sp] = j
	return append(jobs, j)
}

// mergeFieldObs adds every goroutine's field counts to the field watch
// (the loop, after the parallel phase).
func (a *App) mergeFieldObs() {
	a.fields.merge(&a.loopW.fields)
	for _, w := range a.workers {
		a.fields.merge(&w.fields)
	}
}

// applyWatermarks applies a watermark record read by task t with w's
// scratch (watermarks.go), safe on any goroutine that owns t.
func (w *aggWorker) applyWatermarks(a *App, t *task, rec *kgo.Record, now time.Time) {
	w.wmIn = a.applyWatermarks(t, rec, now, w.wmIn)
}
