package engine

import (
	"github.com/eddy-streams/eddy/processor/engine/alert"
	"github.com/eddy-streams/eddy/state"
)

// Record is one record of the aggregation input, as the shell hands it to
// Task.Process: decoded, with the stateless steps (event time, filter,
// grouping key) already applied. The shell builds it from a Kafka record;
// the engine never sees Kafka types.
type Record struct {
	// Input is the partition of the aggregation input the record was read
	// from, Offset its offset there.
	Input  state.SourcePartition
	Offset int64
	// Source and SourceOffset name the source record it came from: equal
	// to Input and Offset unless it went through the repartition topic.
	Source       state.SourcePartition
	SourceOffset int64
	// SourceWatermark, when above Time, is the watermark its source
	// partition had reached when the record was forwarded through the
	// repartition topic (records of one source partition reach several
	// tasks; each learns the partition's progress from any of them).
	SourceWatermark int64

	Key    string         // the grouping key (state.MaxKeyLen at most)
	Time   int64          // event time, ms since the epoch
	Fields map[string]any // the decoded value

	// Reject, when set, means the stateless steps refused the record: it
	// goes to the dead-letter topic (after the duplicate check).
	Reject *Reject
	// Filtered means the pipeline's filter dropped the record.
	Filtered bool
}

// Reject is why a record is not aggregated: a class (one of the Err*
// sentinels), the field at fault if any, and the cause.
type Reject struct {
	Class error
	Field string
	Err   error
}

// Result is one window result to write.
type Result struct {
	Window state.WindowKey
	// Row belongs to the task's store: valid until the next call on the
	// Task, so encode it before calling the task again.
	Row   *state.Row
	Final bool // the window closed
	// Silent: closed, but emit=update has written it already (alerts
	// still see it close; nothing is written).
	Silent bool
}

// Late says why a record was late: every window it belongs to has closed.
type Late struct {
	Window     state.WindowKey // the (last) window it would have joined
	EventTime  int64
	StreamTime int64
}

// AlertTransition is one alert to publish (firing or resolved).
type AlertTransition = alert.Transition

// Alert is one published alert transition, rendered.
type Alert = alert.Alert

// FormatTime renders ms as eddy writes times in headers and alerts.
func FormatTime(ms int64) string { return alert.FormatTime(ms) }

// TimeLayout is the layout of FormatTime.
const TimeLayout = alert.TimeLayout

const timeLayout = TimeLayout

// Effects is what one call of Process, Punctuate or Flush asks the shell
// to do, in order within each kind. The engine reuses the slices: the
// caller owns an Effects and must consume it before the next call.
type Effects struct {
	Results    []Result
	Alerts     []AlertTransition
	Late       *Late
	DeadLetter *Reject
	Duplicate  bool // already applied (a redelivered input or source record)
	Filtered   bool
	// Aggregated: the record passed the stateless steps and reached the
	// aggregates' inputs (even if they then refused it).
	Aggregated bool
	// MovedOn: stream time moved on without these stalled input
	// partitions (Punctuate only).
	MovedOn []MovedOn
}

func (fx *Effects) reset() {
	clear(fx.Results)
	clear(fx.Alerts)
	*fx = Effects{Results: fx.Results[:0], Alerts: fx.Alerts[:0], MovedOn: fx.MovedOn[:0]}
}
