package processor

// Several rollups in one pipeline (topology.Spec.Rollups, issue 20).
//
// The source is read and decoded once, and its stateless steps (derived
// fields, lookups, event time, filter) run once per record, with the
// pipeline of the first rollup (App.p, whose spec has the shared parts).
// Rollups with the same key make one aggregation stage (aggStage): the
// record is keyed once per stage and forwarded once to the stage's
// repartition topic (or, under keyed_by_group_key, the stage reads the
// source topics). Each partition of a stage has one task per rollup of
// the stage, in spec order: the rollups that read the stage's records,
// and the chained rollups, which read the final results of another of
// its rollups (same key, same partition) instead. So one record of the
// stage's input is decoded once and applied to each of its rollups' tasks
// in turn, on the goroutine that owns the partition's tasks for the turn
// (parallel.go); a chained task follows the task it reads after every
// call that may close its windows (follow). Each rollup has its own store
// and changelog, output, emit mode and alert rules; the late and
// dead-letter topics are shared.
//
// The single-rollup form is one stage with one rollup: nothing of the
// above changes what it writes.

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// hdrRollup, on a late or dead-letter record of a pipeline with several
// rollups, names the rollup it is late for, or whose aggregate refused it.
const hdrRollup = "eddy.rollup"

// rollup is one rollup of the pipeline.
type rollup struct {
	idx   int       // in App.rollups, spec order
	p     *pipeline // its spec is the rollup's (topology.Spec.RollupSpecs)
	stage *aggStage
	slot  int     // its task's index in each partition's task list of the stage
	from  *rollup // chained: the rollup whose final results it merges
	// followers are the rollups chained from this one.
	followers []*rollup
	changelog string // p.spec.ChangelogTopic(), made once
}

// name is the rollup's name, "" in the single-rollup form.
func (r *rollup) name() string { return r.p.spec.RollupName }

// aggStage is one aggregation input and the rollups whose tasks read it.
type aggStage struct {
	idx     int
	topics  []string // the repartition topic, or the source topics (keyed_by_group_key)
	repart  bool     // topics is the repartition topic
	key     []string // the grouping key of its rollups
	rollups []*rollup
	// minGrace is the smallest grace of the rollups reading the stage's
	// records: a record older than that behind the watermarks may be late
	// for one of them (beforeLateForward).
	minGrace int64
}

// topic is the stage's repartition topic ("" under keyed_by_group_key).
func (s *aggStage) topic() string {
	if !s.repart {
		return ""
	}
	return s.topics[0]
}

// taskKey names the tasks of one partition of one stage.
type taskKey struct {
	stage int
	p     int32
}

// owner is the key's id among the Alertmanager forwarder's owners of
// alerts: the partition, with the stage above bit 20.
func (k taskKey) owner() int32 { return int32(k.stage)<<20 | k.p }

func compareTaskKeys(x, y taskKey) int {
	if x.stage != y.stage {
		return x.stage - y.stage
	}
	return int(x.p) - int(y.p)
}

// fmtTaskKeys renders ks as "[0 1 2]", or with the stage first
// ("[0/1 1/1]") when some are of another stage than the first.
func fmtTaskKeys(ks []taskKey) string {
	b := []byte{'['}
	for i, k := range ks {
		if i > 0 {
			b = append(b, ' ')
		}
		if k.stage > 0 {
			b = fmt.Appendf(b, "%d/", k.stage)
		}
		b = fmt.Appendf(b, "%d", k.p)
	}
	return string(append(b, ']'))
}

// taskCount is the number of tasks (one per rollup and partition).
func (a *App) taskCount() int {
	n := 0
	for _, ts := range a.tasks {
		n += len(ts)
	}
	return n
}

// sortedTaskKeys are the keys of a.tasks, by stage then partition.
func (a *App) sortedTaskKeys() []taskKey {
	ks := make([]taskKey, 0, len(a.tasks))
	for k := range a.tasks {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, compareTaskKeys)
	return ks
}

// buildRollups compiles every rollup of spec into its pipeline and groups
// them into stages. The first rollup's pipeline also runs the shared
// stateless steps.
func buildRollups(spec *topology.Spec) ([]*rollup, []*aggStage, error) {
	specs := spec.RollupSpecs()
	rs := make([]*rollup, len(specs))
	byName := make(map[string]*rollup, len(specs))
	var stages []*aggStage
	for i, rs1 := range specs {
		p, err := newPipeline(rs1)
		if err != nil {
			if rs1.RollupName != "" {
				return nil, nil, fmt.Errorf("rollup %q: %w", rs1.RollupName, err)
			}
			return nil, nil, err
		}
		r := &rollup{idx: i, p: p, changelog: p.spec.ChangelogTopic()}
		if rs1.From != "" {
			r.from = byName[rs1.From]
			if r.from == nil {
				return nil, nil, fmt.Errorf("rollup %q reads rollup %q, which is not defined before it", rs1.RollupName, rs1.From)
			}
			r.from.followers = append(r.from.followers, r)
			r.stage = r.from.stage
		} else {
			topics := []string{rs1.RepartitionTopic()}
			if !rs1.NeedsRepartition() {
				topics = rs1.Source.Topics
			}
			for _, s := range stages {
				if slices.Equal(s.topics, topics) {
					r.stage = s
				}
			}
			if r.stage == nil {
				r.stage = &aggStage{idx: len(stages), topics: topics, repart: rs1.NeedsRepartition(), key: rs1.Key,
					minGrace: rs1.Window.Grace.Milliseconds()}
				stages = append(stages, r.stage)
			}
			r.stage.minGrace = min(r.stage.minGrace, rs1.Window.Grace.Milliseconds())
		}
		r.slot = len(r.stage.rollups)
		r.stage.rollups = append(r.stage.rollups, r)
		rs[i], byName[rs1.RollupName] = r, r
	}
	// The shared steps decode every field any rollup reads, and key the
	// record once per stage when there are several.
	for _, r := range rs[1:] {
		rs[0].p.also = append(rs[0].p.also, r.p)
	}
	rs[0].p.keyLater = len(stages) > 1
	return rs, stages, nil
}

// rollupNamed returns the rollup of rs named name, the first for "".
func rollupNamed(rs []*rollup, app, name string) (*rollup, error) {
	if name == "" {
		return rs[0], nil
	}
	for _, r := range rs {
		if r.name() == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("no rollup %q in pipeline %q", name, app)
}

// stageOf returns the stage reading topic, or nil.
func (a *App) stageOf(topic string) *aggStage {
	for _, s := range a.stages {
		if slices.Contains(s.topics, topic) {
			return s
		}
	}
	return nil
}

// newTasks makes the tasks of partition p of stage s, one per rollup, each
// on its store with its checkpoint (cps, by slot).
func (a *App) newStageTask(r *rollup, p int32, store *state.TaskStore, cp state.Checkpoint, now time.Time) *task {
	t := r.p.newTask(p, store, cp, now)
	t.r = r
	switch {
	case r.from != nil:
		// Its time comes from the task it follows.
	case r.stage.repart:
		t.Expect(a.inputs, now)
		t.ExpireReports(reportTTL(a.p.spec))
	default:
		t.Expect([]state.SourcePartition{{Topic: r.stage.topics[0], Partition: p}}, now)
	}
	return t
}

// follow hands the effects fx of task t (Process, Punctuate, CloseDue) to
// the tasks chained from t's rollup in the same partition, writes what
// they produce and passes it on down the chain. ts are the partition's
// tasks; encs and scratch are the calling goroutine's result encoders and
// effects, per rollup.
func (a *App) follow(ctx context.Context, encs []*resultEncoder, ts []*task, t *task, fx *engine.Effects, scratch []engine.Effects) error {
	return followChain(ts, t, fx, scratch, func(ft *task, ffx *engine.Effects) error {
		a.applyWith(ctx, encs[ft.r.idx], ft, ffx)
		return nil
	})
}

// followChain calls Follow on the tasks chained from t with fx, t's
// effects, then apply with each one's own, then goes on down the chain.
func followChain(ts []*task, t *task, fx *engine.Effects, scratch []engine.Effects, apply func(*task, *engine.Effects) error) error {
	for _, f := range t.r.followers {
		ft := ts[f.slot]
		ffx := &scratch[f.idx]
		if err := ft.Follow(fx.Results, t.ClosedThrough(), ffx); err != nil {
			return fmt.Errorf("rollup %q follows %q: %w", f.name(), t.r.name(), err)
		}
		if err := apply(ft, ffx); err != nil {
			return err
		}
		if err := followChain(ts, ft, ffx, scratch, apply); err != nil {
			return err
		}
	}
	return nil
}

// rollupHeader names the rollup of a late or dead-letter record in a
// pipeline with several; none in the single-rollup form.
func rollupHeader(r *rollup) []kgo.RecordHeader {
	if r == nil || r.name() == "" {
		return nil
	}
	return []kgo.RecordHeader{{Key: hdrRollup, Value: []byte(r.name())}}
}
