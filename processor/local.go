package processor

// (Long: Local mirrors the App's loop step by step; keeping the mirror in
// one file makes a drift from the App visible.)
//
// Local runs a pipeline in process, on records handed to it, with the code
// `eddy run` runs: the shell's stateless steps (pipeline.prepare: decode,
// event time, max_future, filter, grouping key), the engine's tasks (one
// per aggregation partition) and the shell's encoders (outrec.go). No
// Kafka, no goroutines: `eddy test` (processor/eddytest) and runbook
// previews drive it step by step with their own wall clock.
//
// What it models of the App, and what it does not:
//   - A pipeline that repartitions sends each record to the task of the
//     repartition topic's partition of its grouping key (KeyPartition,
//     the App's partitioner), in the order the records are fed: the
//     order of a single source partition, or of the App's partition
//     group when it had every record buffered.
//   - Stream time is the engine's: the lowest watermark of the input
//     partitions a task waits for (every source partition behind the
//     repartition topic, its own otherwise). The App forwards source
//     watermarks through the repartition topic every 200 ms of wall
//     clock; Local hands them to every task at once, after each record,
//     every input partition caught up (nothing waits in process).
//   - The wall clock moves only when the caller says so (Feed, Advance).
//     Each call does what one turn of the App's loop does at that time:
//     process, punctuate (idle advance, due windows, absence alerts),
//     commit when commit_interval has passed since the last (emit: update
//     results come out at commits, as in the App). Feed also punctuates
//     before the record, as the App's loop would have while waiting.
//   - Not modelled: broker failures, rebalances, restores, exactly-once
//     aborts, the size limits of the topics (limits.go), the interleaving
//     of several source partitions fetched at different times.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// ErrWindowLimit is returned by Local.Feed when LocalConfig.MaxOpenWindows
// windows are open: the record was not processed.
var ErrWindowLimit = errors.New("open window limit reached: record not processed")

// LocalConfig is what a Local needs. Zero values take the documented
// defaults.
type LocalConfig struct {
	Spec *topology.Spec
	// Registry is the schema registry of Avro pipelines (source.format or
	// output.format avro); unused otherwise. Output schemas are registered
	// in it, as `eddy run` does.
	Registry schema.Registry
	// Partitions is the number of aggregation partitions: the repartition
	// topic's (which `eddy run` creates with the source's count), or the
	// source topic's for a pipeline keyed by its grouping key. Default 1.
	Partitions int
	// MaxOpenWindows bounds the open windows of all tasks together; past
	// it Feed refuses records with ErrWindowLimit (previews bound their
	// memory so). Default 0: unbounded.
	MaxOpenWindows int
	// CacheRows bounds clean rows kept in memory per task. Default 10000.
	CacheRows int
	// LookupClient, when set, are the Kafka client options (seed
	// brokers, TLS, SASL) NewLocal loads the pipeline's lookup tables
	// with, from their topics, as `eddy run` does, into a temporary
	// directory, kept up to date until Close (runbook previews set it).
	// Without it, every record of a pipeline with lookups goes to the
	// dead-letter topic (class lookup_miss: the tables are not loaded).
	LookupClient []kgo.Opt
	// Logger receives the lookup tables' log. Default: discarded.
	Logger *slog.Logger
}

// Local is a pipeline run in process (see the comment at the top of
// local.go). It is used by one goroutine at a time.
type Local struct {
	cfg        LocalConfig
	p          *pipeline // the first rollup's: the shared stateless steps (rollups.go)
	rollups    []*rollup
	stages     []*aggStage
	db         *state.DB
	tasks      [][][]*task // by stage and partition, one per rollup of the stage
	next       [][]int64   // repartitioned pipelines: next offset of each stage's aggregation partitions
	inputs     []state.SourcePartition
	wm         map[state.SourcePartition]int64 // repartitioned pipelines: each source partition's watermark
	fx         []engine.Effects                // per rollup
	out        []*kgo.Record
	started    bool
	lastCommit time.Time
	refused    int

	stopTables func() // lookup tables (LocalConfig.LookupClient); nil without
	tablesDir  string
}

// NewLocal compiles cfg.Spec and opens an in-memory store. For Avro
// pipelines it binds the schemas through cfg.Registry (ctx bounds it).
func NewLocal(ctx context.Context, cfg LocalConfig) (*Local, error) {
	if cfg.Spec == nil {
		return nil, errors.New("processor: LocalConfig.Spec is required")
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if cfg.CacheRows <= 0 {
		cfg.CacheRows = 10000
	}
	rollups, stages, err := buildRollups(cfg.Spec)
	if err != nil {
		return nil, err
	}
	m := newMetrics(nil)
	for _, r := range rollups {
		if err := r.p.bindSchemas(ctx, cfg.Registry, slog.New(slog.DiscardHandler), m); err != nil {
			return nil, err
		}
	}
	db, err := state.OpenMem()
	if err != nil {
		return nil, err
	}
	l := &Local{cfg: cfg, p: rollups[0].p, rollups: rollups, stages: stages, db: db,
		fx: make([]engine.Effects, len(rollups)), wm: map[state.SourcePartition]int64{}}
	for range stages {
		l.next = append(l.next, make([]int64, cfg.Partitions))
	}
	if len(cfg.Spec.Lookups) > 0 && cfg.LookupClient != nil {
		if err := l.loadTables(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	for _, topic := range cfg.Spec.Source.Topics {
		for i := range cfg.Partitions {
			l.inputs = append(l.inputs, state.SourcePartition{Topic: topic, Partition: int32(i)})
		}
	}
	return l, nil
}

// start makes the tasks, at the wall clock of the first step (their idle
// timeouts count from it, as the App's from their assignment).
func (l *Local) start(now time.Time) error {
	if l.started {
		return nil
	}
	l.started, l.lastCommit = true, now
	l.tasks = make([][][]*task, len(l.stages))
	for si, st := range l.stages {
		for i := range l.cfg.Partitions {
			var pts []*task
			for _, r := range st.rollups {
				store := l.db.TaskStore(r.p.spec.Store, int32(i), r.p.aggSpecs, l.cfg.CacheRows)
				t := r.p.newTask(int32(i), store, state.Checkpoint{}, now)
				t.r = r
				if err := t.rebuildIndex(); err != nil {
					return err
				}
				// The input partitions the task waits for (App.newStageTask).
				switch {
				case r.from != nil:
				case st.repart:
					t.Expect(l.inputs, now)
					// The source stage's first report: every source
					// partition, none read yet, caught up.
					for _, in := range l.inputs {
						t.ObserveWatermark(engine.Watermark{Input: in, CaughtUp: true}, now)
					}
				default:
					t.Expect([]state.SourcePartition{{Topic: st.topics[0], Partition: int32(i)}}, now)
				}
				pts = append(pts, t)
			}
			l.tasks[si] = append(l.tasks[si], pts)
		}
	}
	return nil
}

// allTasks calls fn for every task, by stage, partition and rollup.
func (l *Local) allTasks(fn func(ts []*task, t *task) error) error {
	for _, parts := range l.tasks {
		for _, ts := range parts {
			for _, t := range ts {
				if err := fn(ts, t); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Feed processes one source record (Topic, Partition, Offset, Key, Value,
// Timestamp and Headers as a consumer reads them from Kafka: offsets must
// grow within a partition, or the record counts as a duplicate) at the
// wall clock now. What eddy run would write for it is kept for Drain. An
// error wrapping schema.ErrRegistryUnavailable means the record could not
// be decoded now and nothing of it was applied; ErrWindowLimit that it was
// refused; any other error is a state failure (the Local is then unusable).
func (l *Local) Feed(ctx context.Context, rec *kgo.Record, now time.Time) error {
	if err := l.start(now); err != nil {
		return err
	}
	if err := l.punctuate(now); err != nil {
		return err
	}
	if l.cfg.MaxOpenWindows > 0 && l.OpenWindowCount() >= l.cfg.MaxOpenWindows {
		l.refused++
		return ErrWindowLimit
	}
	spec := l.p.spec
	var (
		ts []*task
		er engine.Record
		ev event
		re *RecordError
	)
	if spec.NeedsRepartition() {
		// The repartition stage (App.forwardSource): stateless steps on the
		// source record, then, per stage, the tasks of the grouping key's
		// partition.
		var uerr error
		ev, re, uerr = l.p.prepare(ctx, rec, now)
		if uerr != nil {
			return uerr
		}
		switch {
		case re != nil:
			l.out = append(l.out, deadLetterRecord(spec.DeadLetterTopic, rec, re, nil, now))
			return l.afterStep(now)
		case ev.filtered:
			l.advanceWatermark(rec, ev.ts, now)
			return l.afterStep(now)
		}
		for si, st := range l.stages {
			key := ev.key
			if l.p.keyLater {
				var kre *RecordError
				if key, kre = stageKey(ev.fields, st.key); kre != nil {
					dl := deadLetterRecord(spec.DeadLetterTopic, rec, kre, rollupHeader(st.rollups[0]), now)
					l.out = append(l.out, dl)
					continue
				}
			}
			part := KeyPartition(st.topic(), key, l.cfg.Partitions)
			er = engine.Record{
				Input:        state.SourcePartition{Topic: st.topic(), Partition: part},
				Offset:       l.next[si][part],
				Source:       state.SourcePartition{Topic: rec.Topic, Partition: rec.Partition},
				SourceOffset: rec.Offset,
				Key:          key, Time: ev.ts, Fields: ev.fields,
			}
			l.next[si][part]++
			if err := l.process(l.tasks[si][part], er, rec, re, now); err != nil {
				return err
			}
		}
		l.advanceWatermark(rec, ev.ts, now)
		return l.afterStep(now)
	} else {
		if rec.Partition < 0 || int(rec.Partition) >= l.cfg.Partitions {
			return fmt.Errorf("record of %s partition %d: the pipeline runs %d partitions (LocalConfig.Partitions)", rec.Topic, rec.Partition, l.cfg.Partitions)
		}
		ts = l.tasks[0][rec.Partition]
		in := state.SourcePartition{Topic: rec.Topic, Partition: rec.Partition}
		er = engine.Record{Input: in, Offset: rec.Offset, Source: in, SourceOffset: rec.Offset}
		// As App.processAgg: decode, then the stateless steps.
		fields, dre, uerr := l.p.decode(ctx, rec)
		if uerr != nil {
			return uerr
		}
		if re = dre; re == nil {
			ev, re = l.p.prepareFields(fields, rec, now)
		}
	}
	if re != nil {
		er.Reject = &engine.Reject{Class: re.Class, Field: re.Field, Err: re.Err}
	}
	er.Key, er.Time, er.Fields, er.Filtered = ev.key, ev.ts, ev.fields, ev.filtered
	if err := l.process(ts, er, rec, re, now); err != nil {
		return err
	}
	return l.afterStep(now)
}

// advanceWatermark is the source stage's watermark: the highest event time
// of the records it forwarded that passed decoding and event time
// (partitionGroup.drain), filtered ones included. The App reports it to
// every task through the repartition topic (sendWatermarks, every 200 ms
// of wall clock); Local reports it at once, caught up.
func (l *Local) advanceWatermark(rec *kgo.Record, ts int64, now time.Time) {
	sp := state.SourcePartition{Topic: rec.Topic, Partition: rec.Partition}
	if ts <= l.wm[sp] {
		return
	}
	l.wm[sp] = ts
	_ = l.allTasks(func(_ []*task, t *task) error {
		if t.r.from == nil {
			t.ObserveWatermark(engine.Watermark{Input: sp, Time: ts, CaughtUp: true}, now)
		}
		return nil
	})
}

// process is the engine step of App.processAgg, with the same outputs.
// The lead may keep every engine call of Local here and in punctuate and
// Commit.
// ts are the tasks of the record's partition (one per rollup of its
// stage); re is why the stateless steps refused it, if they did.
func (l *Local) process(ts []*task, er engine.Record, rec *kgo.Record, re *RecordError, now time.Time) error {
	spec := l.p.spec
	for _, t := range ts {
		if t.r.from != nil {
			continue
		}
		first := t.r.slot == 0
		fx := &l.fx[t.r.idx]
		if err := t.Process(er, now, fx); err != nil {
			return err
		}
		if fx.Duplicate || fx.Filtered {
			continue
		}
		if dl := fx.DeadLetter; dl != nil {
			switch {
			case er.Reject == nil:
				l.out = append(l.out, deadLetterRecord(spec.DeadLetterTopic, rec, &RecordError{Class: dl.Class, Field: dl.Field, Err: dl.Err}, rollupHeader(t.r), now))
			case first:
				l.out = append(l.out, deadLetterRecord(spec.DeadLetterTopic, rec, re, nil, now))
			}
			continue
		}
		if late := fx.Late; late != nil {
			l.out = append(l.out, lateRecord(spec.LateTopic, rec, late, er.Source, er.SourceOffset, rollupHeader(t.r), now))
		}
		if err := l.applyFollow(ts, t, fx); err != nil {
			return err
		}
	}
	return nil
}

// applyFollow applies fx, t's effects, and hands them down t's chain.
func (l *Local) applyFollow(ts []*task, t *task, fx *engine.Effects) error {
	if err := l.apply(t.r.p, fx); err != nil {
		return err
	}
	return followChain(ts, t, fx, l.fx, func(ft *task, ffx *engine.Effects) error { return l.apply(ft.r.p, ffx) })
}

// apply encodes the alert transitions and results of fx (App.apply),
// fx being of a task of p's rollup.
func (l *Local) apply(p *pipeline, fx *engine.Effects) error {
	for _, tr := range fx.Alerts {
		r, err := p.alertRecord(tr)
		if err != nil {
			return err
		}
		l.out = append(l.out, r)
	}
	for _, res := range fx.Results {
		if res.Silent {
			continue
		}
		r, err := p.resultRecord(res)
		if err != nil {
			return err
		}
		l.out = append(l.out, r)
	}
	return nil
}

// afterStep is the rest of one turn of the App's loop: punctuate, and
// commit when commit_interval has passed.
func (l *Local) afterStep(now time.Time) error {
	if err := l.punctuate(now); err != nil {
		return err
	}
	if now.Sub(l.lastCommit) >= l.p.spec.CommitInterval {
		return l.commit(now)
	}
	return nil
}

func (l *Local) punctuate(now time.Time) error {
	return l.allTasks(func(ts []*task, t *task) error {
		if t.r.from != nil {
			return nil // its time comes from the task it follows
		}
		// App.reportInputs: nothing waits to be read in process.
		t.SetInputCaughtUp(true)
		if st := t.r.stage; !st.repart {
			in := state.SourcePartition{Topic: st.topics[0], Partition: t.partition}
			t.ObserveWatermark(engine.Watermark{Input: in, CaughtUp: true}, now)
		}
		fx := &l.fx[t.r.idx]
		if err := t.Punctuate(now, fx); err != nil {
			return err
		}
		return l.applyFollow(ts, t, fx)
	})
}

// Advance moves the wall clock to now: idle tasks' stream time advances
// (after idle_timeout), due windows close, absence alerts fire, and a
// commit happens when commit_interval has passed.
func (l *Local) Advance(now time.Time) error {
	if err := l.start(now); err != nil {
		return err
	}
	return l.afterStep(now)
}

// Commit flushes every task as the App's commit does (emit: update
// results come out here) and makes the state durable in the in-memory
// store. The App commits at shutdown too: call it before the last Drain
// to see what a stopped `eddy run` would have written.
func (l *Local) Commit(now time.Time) error {
	if err := l.start(now); err != nil {
		return err
	}
	return l.commit(now)
}

func (l *Local) commit(now time.Time) error {
	l.lastCommit = now
	return l.allTasks(func(_ []*task, t *task) error {
		fx := &l.fx[t.r.idx]
		changes, ok, err := t.Flush(fx)
		if err != nil || !ok {
			return err
		}
		if err := l.apply(t.r.p, fx); err != nil {
			return err
		}
		cp := t.Checkpoint()
		if err := t.store.Commit(changes, cp); err != nil {
			return err
		}
		t.cp = cp
		t.Flushed()
		return nil
	})
}

// Drain returns the records eddy run would have written since the last
// Drain, in the order it would have produced them: results (output
// topic), late records, dead letters and alert transitions, encoded as
// the App encodes them. Late and dead-letter records carry the wall clock
// of their step as their timestamp.
func (l *Local) Drain() []*kgo.Record {
	out := l.out
	l.out = nil
	return out
}

// WindowValues is one open window's current aggregates.
type WindowValues struct {
	Window state.WindowKey
	// Values holds each aggregate that has a value, by name (min, max,
	// mean and quantiles have none before their first input).
	Values map[string]float64
}

// OpenWindows returns the open windows of key (the grouping key as eddy
// writes it: a JSON array of the key fields' values), oldest first, of
// the first rollup.
func (l *Local) OpenWindows(key string) ([]WindowValues, error) { return l.OpenWindowsIn("", key) }

// OpenWindowsIn is OpenWindows of the rollup named rollup ("" the first).
// An unknown rollup is an error.
func (l *Local) OpenWindowsIn(rollup, key string) ([]WindowValues, error) {
	r, err := rollupNamed(l.rollups, l.cfg.Spec.App, rollup)
	if err != nil {
		return nil, err
	}
	if len(l.tasks) == 0 {
		return nil, nil
	}
	var out []WindowValues
	for _, ts := range l.tasks[r.stage.idx] {
		t := ts[r.slot]
		rs, err := t.OpenWindowsOf(key)
		if err != nil {
			return nil, err
		}
		for _, res := range rs {
			wv := WindowValues{Window: res.Window, Values: map[string]float64{}}
			for i, a := range r.p.spec.Aggregates {
				if v, ok := res.Row.Value(i); ok {
					wv.Values[a.Name] = v
				}
			}
			out = append(out, wv)
		}
	}
	return out, nil
}

// OpenWindowCount is the number of open windows of all tasks.
func (l *Local) OpenWindowCount() int {
	n := 0
	_ = l.allTasks(func(_ []*task, t *task) error {
		n += t.OpenWindows()
		return nil
	})
	return n
}

// Refused is the number of records Feed refused with ErrWindowLimit.
func (l *Local) Refused() int { return l.refused }

// StreamTime is the stream time (ms) of aggregation partition p, and
// whether it has one (a record reached it).
func (l *Local) StreamTime(p int) (int64, bool) {
	if len(l.tasks) == 0 || p < 0 || p >= len(l.tasks[0]) {
		return 0, false
	}
	t := l.tasks[0][p][0]
	return t.StreamTime(), t.HasTime()
}

// Close releases the in-memory store.
func (l *Local) Close() error {
	if l.stopTables != nil {
		l.stopTables()
		_ = os.RemoveAll(l.tablesDir)
	}
	return l.db.Close()
}

// loadTables loads the lookup tables from their topics (bindTables, as
// the App does) into a temporary directory. ctx bounds the load; the
// tables then follow their topics until Close.
func (l *Local) loadTables(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "eddy-lookups-")
	if err != nil {
		return err
	}
	log := l.cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lctx, cancel := context.WithCancel(context.Background())
	stopWatch := context.AfterFunc(ctx, cancel) // ctx ends during the load: give up
	stop, err := l.p.bindTables(lctx, l.cfg.LookupClient, dir, log)
	stopWatch()
	if err != nil {
		cancel()
		_ = os.RemoveAll(dir)
		return err
	}
	l.tablesDir = dir
	l.stopTables = func() { stop(); cancel() }
	return nil
}

// Progress is how far a running App got (App.Settle).
type Progress struct {
	// Forwarded: pipelines that repartition, the next offset of each
	// source partition the repartition stage has forwarded.
	Forwarded map[state.SourcePartition]int64
	// Processed: the next offset of each aggregation input partition
	// (the repartition topic's, or the source's) the tasks processed.
	Processed map[state.SourcePartition]int64
	// Buffered is the number of records produced and not yet
	// acknowledged by the brokers.
	Buffered int64
}

// Settle is for the test kit's Kafka mode (processor/eddytest), which
// drives the App with its own clock: under the processing lock it does
// what the processing loop does after every poll at the App's clock now
// (punctuate, then commit when commit_interval has passed), so that a
// wall-clock step has taken effect when it returns, and reports how far
// processing got.
func (a *App) Settle(ctx context.Context) (Progress, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pr := Progress{Forwarded: map[state.SourcePartition]int64{}, Processed: map[state.SourcePartition]int64{}}
	if a.cl == nil {
		return pr, errors.New("processor: Settle before Run")
	}
	if err := a.punctuate(); err != nil {
		return pr, err
	}
	if a.clock.Now().Sub(a.lastCommit) >= a.p.spec.CommitInterval {
		if err := a.commitLocked(ctx); err != nil {
			return pr, err
		}
	}
	for sp, off := range a.srcPos {
		pr.Forwarded[sp] = off
	}
	for _, ts := range a.tasks {
		for _, t := range ts {
			for sp, off := range t.InputPositions() {
				pr.Processed[sp] = off
			}
		}
	}
	pr.Buffered = a.cl.BufferedProduceRecords()
	return pr, nil
}
