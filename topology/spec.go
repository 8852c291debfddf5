package topology

import "time"

// Spec is one pipeline, as written by a user in YAML. Every field documents
// its default; Parse fills defaults in (SetDefaults, for a Spec built in Go)
// and Validate names every bad field and says how to fix it. Names that end up in topic or store names (App,
// Store, Output.Topic, LateTopic, DeadLetterTopic) are explicit and stable:
// renaming them changes where state lives.
type Spec struct {
	// App is the application id: the consumer group id and the prefix of
	// every internal topic. Required; letters, digits, '.', '_' and '-'.
	App string `yaml:"app"`

	// Source says what to read.
	Source Source `yaml:"source"`

	// Time says where event time comes from.
	Time Time `yaml:"time"`

	// Derived lists fields computed per record from its other fields,
	// in order (each may use the fields before it), before the lookups,
	// the filter and the key: they can be keys, filter and where inputs,
	// aggregate inputs and lookup join fields. Default none.
	Derived []Derived `yaml:"derived,omitempty"`

	// Lookups join each record with local copies of compacted topics,
	// after the derived fields: the matched entry's value fields become
	// record fields. Default none.
	Lookups []Lookup `yaml:"lookups,omitempty"`

	// Filter is an optional boolean expression (expr-lang syntax) over the
	// record's fields; records for which it is false are skipped (counted,
	// not routed anywhere). Example: `status >= 0 && endpoint != "/health"`.
	Filter string `yaml:"filter,omitempty"`

	// Key lists the fields whose values form the grouping key, in order.
	// Required, at least one.
	Key []string `yaml:"key"`

	// Window is the windowing of the aggregation.
	Window Window `yaml:"window"`

	// Aggregates are the named values computed per key and window.
	// Required, at least one.
	Aggregates []Aggregate `yaml:"aggregates"`

	// Emit is "close" (default: one final result per window, once stream
	// time passes its end plus grace) or "update" (a result on every change,
	// at most once per key and window per commit interval).
	Emit string `yaml:"emit,omitempty"`

	// Output names where results go.
	Output Output `yaml:"output"`

	// Store is the name of the window store. Its changelog topic is
	// "<app>-<store>-changelog". Default "windows".
	Store string `yaml:"store,omitempty"`

	// LateTopic receives records that arrive after their window closed,
	// with their original bytes. Default "<app>-late".
	LateTopic string `yaml:"late_topic,omitempty"`

	// DeadLetterTopic receives records that cannot be decoded or evaluated,
	// with their original bytes and headers saying why. Default "<app>-dlq".
	DeadLetterTopic string `yaml:"dead_letter_topic,omitempty"`

	// Processing is "at_least_once" (default) or "exactly_once".
	Processing string `yaml:"processing,omitempty"`

	// CommitInterval is how often state is flushed and offsets committed.
	// Default 1s.
	CommitInterval time.Duration `yaml:"commit_interval,omitempty"`

	// StandbyReplicas is how many other workers keep a warm copy of each
	// aggregation task's state by tailing its changelogs, so that a task
	// moved after its worker died restores only the changelog records
	// the copy had not yet applied. Default 0: no standby; 0 to 9.
	StandbyReplicas int `yaml:"standby_replicas,omitempty"`

	// IdleTimeout is how long a partition may receive nothing before wall
	// clock time starts advancing its stream time, so windows still close
	// when input goes quiet. Default 10s; 0 is not allowed (use a large
	// value to effectively disable).
	IdleTimeout time.Duration `yaml:"idle_timeout,omitempty"`

	// MaxWait bounds how long windows wait for an input partition that
	// has records to read but makes no progress (its worker died, it is
	// paused for the schema registry, restoring or being rebalanced):
	// after MaxWait without progress, stream time moves on without it and
	// its records older than that become late. Default 2m; 0 is not
	// allowed.
	MaxWait time.Duration `yaml:"max_wait,omitempty"`

	// Alerts are optional rules over the window results (docs/alerting.md).
	Alerts *Alerts `yaml:"alerts,omitempty"`

	// Rollups, when set, are several aggregations of the one source read:
	// each with its own key, window, aggregates, emit mode, output, store
	// and alerts (rollups.go). The top-level Key, Window, Aggregates,
	// Emit, Output, Store and Alerts are then left out. Default none: the
	// pipeline is one rollup, written at the top level.
	Rollups []Rollup `yaml:"rollups,omitempty"`

	// Set by RollupSpecs on the spec of one rollup, never written by
	// users: the rollup's name ("" in the single-rollup form), the
	// rollup whose final results it merges (chained rollups, "" for one
	// fed by the source), and its repartition topic when that is not
	// "<app>-repartition".
	RollupName  string `yaml:"-"`
	From        string `yaml:"-"`
	Repartition string `yaml:"-"`
}

// Emit modes.
const (
	EmitClose  = "close"
	EmitUpdate = "update"
)

// MaxStandbyReplicas bounds Spec.StandbyReplicas (exclusive).
const MaxStandbyReplicas = 10

// Processing guarantees.
const (
	AtLeastOnce = "at_least_once"
	ExactlyOnce = "exactly_once"
)

// Value formats of Source and Output.
const (
	FormatJSON = "json"
	FormatAvro = "avro"
)

// Source names the input topics and how their values are encoded.
type Source struct {
	// Topics to read. Required, at least one. All must have the same
	// partition count when the grouping key is the Kafka key.
	Topics []string `yaml:"topics"`

	// Format of record values: "json" (default) or "avro" (Confluent wire
	// format with a schema registry).
	Format string `yaml:"format,omitempty"`

	// Subject optionally pins the registry subject that records must use
	// (format avro only).
	Subject string `yaml:"subject,omitempty"`

	// KeyedByGroupKey says the producers already key records by exactly the
	// grouping key (its fields joined as eddy does), so no repartition topic
	// is needed. Default false: records go through "<app>-repartition".
	KeyedByGroupKey bool `yaml:"keyed_by_group_key,omitempty"`
}

// Time says where a record's event time comes from.
type Time struct {
	// Field holds the event time: a number of milliseconds since the Unix
	// epoch, or an RFC 3339 string. Empty (default) means the Kafka record
	// timestamp.
	Field string `yaml:"field,omitempty"`

	// MaxFuture rejects (dead-letters) records whose event time is more
	// than this ahead of the wall clock, so one bad clock cannot close every
	// window. Default 1h.
	MaxFuture time.Duration `yaml:"max_future,omitempty"`
}

// Window kinds.
const (
	WindowTumbling = "tumbling"
	WindowHopping  = "hopping"
	WindowSession  = "session"
)

// Window describes how records are grouped in time.
type Window struct {
	// Type is "tumbling", "hopping" or "session". Required.
	Type string `yaml:"type"`
	// Size of tumbling and hopping windows. Required for those.
	Size time.Duration `yaml:"size,omitempty"`
	// Advance of hopping windows (how far each window starts after the
	// previous). Required for hopping; positive and at most Size.
	Advance time.Duration `yaml:"advance,omitempty"`
	// Gap is the inactivity gap that ends a session. Required for session.
	Gap time.Duration `yaml:"gap,omitempty"`
	// Grace is how long after a window's end records are still accepted
	// (stream time, not wall time). Default 0.
	Grace time.Duration `yaml:"grace,omitempty"`
}

// Aggregate operations.
const (
	AggCount    = "count"
	AggSum      = "sum"
	AggMin      = "min"
	AggMax      = "max"
	AggMean     = "mean"
	AggQuantile = "quantile" // written p50, p95, p99, p99.9 in specs
	AggDistinct = "distinct"
	AggTopK     = "top_k"
)

// MaxTopK bounds Aggregate.K: a top_k keeps TopKCapacity(K) counters per
// key and window.
const MaxTopK = 1000

// TopKCapacity is the number of counters a top_k aggregate keeps for k:
// ten per reported value, at least 64. The state package's sketch takes it
// as its capacity; the error bound (see TopKErrorText) follows from it.
func TopKCapacity(k int) int { return max(10*k, 64) }

// Derived is one field computed per record.
type Derived struct {
	// Name of the new field. Required; letters, digits and '_', not
	// starting with a digit, unique among derived and lookup fields.
	Name string `yaml:"name"`
	// Expr computes it from the record's fields (expr-lang syntax), e.g.
	// `int(status / 100)` or `latency_ms > 500`. Required. A record on
	// which it fails goes to the dead-letter topic (class expression,
	// header eddy.error.field = Name).
	Expr string `yaml:"expr"`
}

// Lookup miss policies.
const (
	OnMissDefault    = "default"
	OnMissDeadLetter = "dead_letter"
)

// Lookup joins records with a local copy of a compacted topic.
type Lookup struct {
	// Name of the table: it names its local directory. Required; letters,
	// digits, '.', '_' and '-'.
	Name string `yaml:"name"`
	// Topic is the compacted topic holding the table: the Kafka record
	// key is the table key (as text), the value a JSON object (null: the
	// entry is deleted). Required. eddy only reads it.
	Topic string `yaml:"topic"`
	// On is the record field (or derived field) whose value, as text, is
	// looked up. Required.
	On string `yaml:"on"`
	// Fields are the value fields of a table entry that become record
	// fields. Required, at least one.
	Fields []string `yaml:"fields"`
	// OnMiss says what happens to a record whose On value is not in the
	// table (or is null): "default" (the default: Fields take their
	// Defaults, null when none is given) or "dead_letter" (the record goes
	// to the dead-letter topic, class lookup_miss).
	OnMiss string `yaml:"on_miss,omitempty"`
	// Defaults are the values of Fields on a miss (on_miss default).
	// Default: null.
	Defaults map[string]any `yaml:"defaults,omitempty"`
}

// Aggregate is one named value computed per key and window.
type Aggregate struct {
	// Name is the output field name. Required, unique.
	Name string `yaml:"name"`
	// Op is count, sum, min, max, mean, distinct, top_k, or a percentile
	// written pNN (p50, p95, p99, p99.9). Required.
	Op string `yaml:"op"`
	// Field is the numeric input field (not used by count; a string or
	// number field for distinct and top_k).
	Field string `yaml:"field,omitempty"`
	// Where optionally restricts the aggregate to records for which this
	// boolean expression is true, e.g. `status >= 500` for an error count.
	Where string `yaml:"where,omitempty"`

	// K is how many values op top_k reports (the K with the highest
	// counts). Required for top_k, from 1 to MaxTopK; not used by other ops.
	K int `yaml:"k,omitempty"`

	// Quantile is filled by Parse and SetDefaults for percentile ops, which
	// they rewrite to Op "quantile": p99 becomes Op "quantile", Quantile
	// 0.99. PercentileName turns it back into "p99".
	Quantile float64 `yaml:"-"`
}

// Output names where results go.
type Output struct {
	// Topic receives one record per (key, window) result. Required.
	Topic string `yaml:"topic"`
	// Format of results: "json" (default) or "avro".
	Format string `yaml:"format,omitempty"`
}
