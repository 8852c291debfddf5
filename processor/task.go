package processor

import (
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/state"
)

// task is the shell's handle on one partition of the aggregation input:
// the engine's task (windows, aggregation, time, alert rules) and what the
// commit protocol keeps beside it. Only the app's processing goroutine
// touches a task.
type task struct {
	*engine.Task
	r         *rollup // nil in Local
	partition int32
	store     *state.TaskStore
	cp        state.Checkpoint // position of the last flush (or restore)

	// inputNext and inputEnd: the offset after the last record fetched
	// from the task's own input partition, and its high watermark then
	// (watermarks.go: caught up when inputNext >= inputEnd).
	inputNext, inputEnd int64
	holder              string // input partition in eddy_watermark_holder, "" none
}

func (p *pipeline) newTask(partition int32, store *state.TaskStore, cp state.Checkpoint, now time.Time) *task {
	return &task{Task: engine.NewTask(p.eng, store, cp, now), partition: partition, store: store, cp: cp}
}

// metricLabel is the task's label in per-task metrics: its partition, and
// its rollup's name first in a pipeline with several ("errors/3").
func (t *task) metricLabel() string {
	p := strconv.Itoa(int(t.partition))
	if t.r != nil && t.r.name() != "" {
		return t.r.name() + "/" + p
	}
	return p
}

// rebuildIndex loads the open-window index, and the alert rules' state,
// from the store after an abort, checking every row.
func (t *task) rebuildIndex() error {
	if err := t.Rebuild(true); err != nil {
		return err
	}
	return t.LoadAlerts()
}
