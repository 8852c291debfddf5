package eddytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/processor/engine/groupkey"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// DefaultStart is the wall clock a Driver (and a case without start:)
// begins at.
var DefaultStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Record is one input record, as a producer would write it.
type Record struct {
	// Topic is one of the pipeline's source topics; default the first.
	Topic     string
	Partition int32
	Key       []byte
	Value     []byte
	// Timestamp is the Kafka timestamp; default the wall clock when piped.
	Timestamp time.Time
	Headers   []kgo.RecordHeader
}

// JSON returns v as JSON, for Record.Value. It panics if v cannot be
// encoded (a test's own data).
func JSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("eddytest.JSON: %v", err))
	}
	return b
}

// Option configures a Driver.
type Option func(*driverConfig)

type driverConfig struct {
	partitions int
	registry   schema.Registry
	start      time.Time
}

// WithPartitions sets the number of source partitions (and so of
// aggregation partitions, as `eddy run` creates the repartition topic
// with the source's count). Default 1.
func WithPartitions(n int) Option { return func(c *driverConfig) { c.partitions = n } }

// WithRegistry sets the schema registry of an Avro pipeline. Default: a
// new MemRegistry.
func WithRegistry(r schema.Registry) Option { return func(c *driverConfig) { c.registry = r } }

// WithStart sets the initial wall clock. Default DefaultStart.
func WithStart(t time.Time) Option { return func(c *driverConfig) { c.start = t } }

// Driver runs a pipeline in process (processor.Local: the code of `eddy
// run`) step by step: Pipe records, move the wall clock, read what eddy
// would have written. It is used by one goroutine at a time.
type Driver struct {
	spec    *topology.Spec
	local   *processor.Local
	reg     schema.Registry
	dec     *schema.Decoder // Avro outputs; nil for JSON
	now     time.Time
	offsets map[string]map[int32]int64
	out     Outcome
	stopped bool
}

// New starts a Driver for spec (validated and compiled here).
func New(spec *topology.Spec, opts ...Option) (*Driver, error) {
	cfg := driverConfig{partitions: 1, start: DefaultStart}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.registry == nil && usesAvro(spec) {
		cfg.registry = NewMemRegistry()
	}
	l, err := processor.NewLocal(context.Background(), processor.LocalConfig{Spec: spec, Registry: cfg.registry, Partitions: cfg.partitions})
	if err != nil {
		return nil, err
	}
	d := &Driver{spec: spec, local: l, reg: cfg.registry, now: cfg.start, offsets: map[string]map[int32]int64{}}
	if writesAvro(spec) {
		d.dec = schema.NewDecoder(cfg.registry)
	}
	return d, nil
}

// usesAvro reports whether the pipeline reads or writes Avro: its source,
// or the output of any of its rollups.
func usesAvro(spec *topology.Spec) bool {
	return spec.Source.Format == topology.FormatAvro || writesAvro(spec)
}

// writesAvro reports whether any rollup of the pipeline writes Avro
// results (and alerts).
func writesAvro(spec *topology.Spec) bool {
	for _, rs := range spec.RollupSpecs() {
		if rs.Output.Format == topology.FormatAvro {
			return true
		}
	}
	return false
}

// RollupNames are the names of the pipeline's rollups, in the order
// written; [""] for a pipeline of one rollup written without rollups:.
func RollupNames(spec *topology.Spec) []string {
	var names []string
	for _, rs := range spec.RollupSpecs() {
		names = append(names, rs.RollupName)
	}
	return names
}

// Registry is the driver's schema registry (nil for a JSON pipeline
// without WithRegistry): register the input schema there to pipe Avro
// values.
func (d *Driver) Registry() schema.Registry { return d.reg }

// Now is the wall clock.
func (d *Driver) Now() time.Time { return d.now }

// Pipe processes records in order at the current wall clock. Offsets are
// assigned per topic and partition from 0, as on a new topic.
func (d *Driver) Pipe(recs ...Record) error {
	if d.stopped {
		return errors.New("eddytest: Pipe after Stop")
	}
	for _, r := range recs {
		kr := d.kafkaRecord(r)
		if err := d.local.Feed(context.Background(), kr, d.now); err != nil {
			return err
		}
		if err := d.collect(); err != nil {
			return err
		}
	}
	return nil
}

// kafkaRecord is r as a consumer would read it: with its topic, offset
// and timestamp.
func (d *Driver) kafkaRecord(r Record) *kgo.Record {
	if r.Topic == "" {
		r.Topic = d.spec.Source.Topics[0]
	}
	if r.Timestamp.IsZero() {
		r.Timestamp = d.now
	}
	offs := d.offsets[r.Topic]
	if offs == nil {
		offs = map[int32]int64{}
		d.offsets[r.Topic] = offs
	}
	off := offs[r.Partition]
	offs[r.Partition] = off + 1
	return &kgo.Record{Topic: r.Topic, Partition: r.Partition, Offset: off, Key: r.Key, Value: r.Value,
		Timestamp: r.Timestamp, Headers: r.Headers}
}

// AdvanceWallClock moves the wall clock forward by dt: idle partitions'
// stream time advances after idle_timeout, due windows close, absence
// alerts fire.
func (d *Driver) AdvanceWallClock(dt time.Duration) error {
	if dt < 0 {
		return fmt.Errorf("eddytest: the wall clock does not go back (%s)", dt)
	}
	return d.SetWallClock(d.now.Add(dt))
}

// SetWallClock moves the wall clock to t (not before the current one).
func (d *Driver) SetWallClock(t time.Time) error {
	if t.Before(d.now) {
		return fmt.Errorf("eddytest: the wall clock does not go back (from %s to %s)", d.now.Format(time.RFC3339Nano), t.Format(time.RFC3339Nano))
	}
	d.now = t
	if err := d.local.Advance(t); err != nil {
		return err
	}
	return d.collect()
}

// Stop does what stopping `eddy run` does: a final commit (with emit:
// update, the results of the windows changed since the last one). Open
// windows stay open; nothing more can be piped.
func (d *Driver) Stop() error {
	if d.stopped {
		return nil
	}
	d.stopped = true
	if err := d.local.Commit(d.now); err != nil {
		return err
	}
	return d.collect()
}

// Close releases the driver's state.
func (d *Driver) Close() error { return d.local.Close() }

func (d *Driver) collect() error {
	recs := d.local.Drain()
	return d.out.add(context.Background(), d.spec, d.dec, recs, nil)
}

// Results are the window results written so far, in order.
func (d *Driver) Results() []Result { return d.out.Results }

// LateRecords are the records written to the late topic so far.
func (d *Driver) LateRecords() []Late { return d.out.Late }

// DeadLetters are the records written to the dead-letter topic so far.
func (d *Driver) DeadLetters() []DeadLetter { return d.out.DeadLetters }

// Alerts are the alert transitions written so far.
func (d *Driver) Alerts() []Alert { return d.out.Alerts }

// Outcome is everything written so far.
func (d *Driver) Outcome() *Outcome { return &d.out }

// OpenWindows returns the open windows of the key with these values of the
// pipeline's key fields, oldest first, with their current aggregates. In a
// pipeline with several rollups, they are the first rollup's
// (OpenWindowsIn names another).
func (d *Driver) OpenWindows(keyValues ...string) ([]processor.WindowValues, error) {
	return d.OpenWindowsIn("", keyValues...)
}

// OpenWindowsIn is OpenWindows of the rollup named rollup ("" the first).
func (d *Driver) OpenWindowsIn(rollup string, keyValues ...string) ([]processor.WindowValues, error) {
	specs := d.spec.RollupSpecs()
	rs := specs[0]
	if rollup != "" {
		rs = nil
		for _, s := range specs {
			if s.RollupName == rollup {
				rs = s
			}
		}
		if rs == nil {
			return nil, fmt.Errorf("eddytest: no rollup %q in pipeline %q", rollup, d.spec.App)
		}
	}
	if len(keyValues) != len(rs.Key) {
		return nil, fmt.Errorf("eddytest: the key has %d fields (%v), not %d", len(rs.Key), rs.Key, len(keyValues))
	}
	fields := make(map[string]any, len(keyValues))
	for i, f := range rs.Key {
		fields[f] = keyValues[i]
	}
	key, _, err := groupkey.Build(fields, rs.Key)
	if err != nil {
		return nil, err
	}
	return d.local.OpenWindowsIn(rollup, key)
}

// Outcome is what a pipeline wrote, decoded by topic role.
type Outcome struct {
	Results     []Result
	Late        []Late
	DeadLetters []DeadLetter
	Alerts      []Alert
	// Records are the records as written, in order (within each topic).
	Records []*kgo.Record
	// Rollups are the names of the pipeline's rollups (RollupNames).
	Rollups []string
}

// Result is one window result.
type Result struct {
	// Rollup names the rollup whose output topic it is on, in a pipeline
	// with several; "" otherwise.
	Rollup      string
	Key         map[string]string // the key fields
	WindowStart time.Time
	WindowEnd   time.Time
	// Values holds every aggregate by name; nil when it had no value
	// (null: a min, max, mean or quantile without input).
	Values map[string]*float64
}

// Late is one record of the late topic.
type Late struct {
	Key, Value []byte
	// Window is the window it missed, as in its header: [start, end).
	Window     string
	EventTime  time.Time
	StreamTime time.Time
	// Topic, Partition and Offset locate the source record.
	Topic     string
	Partition int32
	Offset    int64
	// Rollup is the rollup it was late for (header eddy.rollup), in a
	// pipeline with several; "" otherwise.
	Rollup string
}

// DeadLetter is one record of the dead-letter topic.
type DeadLetter struct {
	Class   string // eddy.error.class: decode, event_time, missing_key_field, ...
	Field   string // eddy.error.field, when a field is at fault
	Message string
	Key     []byte
	Value   []byte
	// Topic, Partition and Offset locate the source record.
	Topic     string
	Partition int32
	Offset    int64
	// Rollup is the rollup whose key or aggregate refused the record
	// (header eddy.rollup), in a pipeline with several; "" when a shared
	// step did (decoding, derived fields, event time, filter) and in a
	// pipeline of one rollup.
	Rollup string
}

// Alert is one alert transition (the alerts topic's record).
type Alert struct {
	processor.Alert
	// Rollup names the rollup whose alerts topic it is on, in a pipeline
	// with several; "" otherwise.
	Rollup string `json:"rollup,omitempty"`
}

// add decodes recs into o. rename maps topic names as written back to the
// pipeline's (the Kafka mode's fresh topics); nil keeps them.
func (o *Outcome) add(ctx context.Context, spec *topology.Spec, dec *schema.Decoder, recs []*kgo.Record, rename func(string) string) error {
	if rename == nil {
		rename = func(s string) string { return s }
	}
	if o.Rollups == nil {
		o.Rollups = RollupNames(spec)
	}
	// Each rollup's output and alerts topics (unique: topology checks).
	outputs, alerts := map[string]*topology.Spec{}, map[string]*topology.Spec{}
	for _, rs := range spec.RollupSpecs() {
		outputs[rs.Output.Topic] = rs
		if t := rs.AlertsTopic(); t != "" {
			alerts[t] = rs
		}
	}
	for _, r := range recs {
		o.Records = append(o.Records, r)
		hdr := func(k string) string {
			for _, h := range r.Headers {
				if h.Key == k {
					return string(h.Value)
				}
			}
			return ""
		}
		loc := func() (string, int32, int64) {
			p, _ := strconv.ParseInt(hdr("eddy.source.partition"), 10, 32)
			off, _ := strconv.ParseInt(hdr("eddy.source.offset"), 10, 64)
			return rename(hdr("eddy.source.topic")), int32(p), off
		}
		if rs := outputs[r.Topic]; rs != nil {
			res, err := decodeResult(ctx, rs, outputDecoder(rs, dec), r)
			if err != nil {
				return err
			}
			o.Results = append(o.Results, res)
			continue
		}
		if rs := alerts[r.Topic]; rs != nil {
			a, err := decodeAlert(ctx, outputDecoder(rs, dec), r)
			if err != nil {
				return err
			}
			a.Rollup = rs.RollupName
			o.Alerts = append(o.Alerts, a)
			continue
		}
		switch r.Topic {
		case spec.LateTopic:
			l := Late{Key: r.Key, Value: r.Value, Window: hdr("eddy.late.window")}
			l.EventTime, _ = time.Parse(time.RFC3339Nano, hdr("eddy.late.event-time"))
			l.StreamTime, _ = time.Parse(time.RFC3339Nano, hdr("eddy.late.stream-time"))
			l.Topic, l.Partition, l.Offset = loc()
			l.Rollup = hdr(hdrRollup)
			o.Late = append(o.Late, l)
		case spec.DeadLetterTopic:
			dl := DeadLetter{Class: hdr("eddy.error.class"), Field: hdr("eddy.error.field"), Message: hdr("eddy.error.message"),
				Key: r.Key, Value: r.Value}
			dl.Topic, dl.Partition, dl.Offset = loc()
			dl.Rollup = hdr(hdrRollup)
			if t := hdr("eddy.source.topic"); t != dl.Topic {
				dl.Message = strings.ReplaceAll(dl.Message, t, dl.Topic)
			}
			o.DeadLetters = append(o.DeadLetters, dl)
		default:
			return fmt.Errorf("eddytest: a record of topic %s, which the pipeline does not write", r.Topic)
		}
	}
	return nil
}

// hdrRollup names the rollup of a late or dead-letter record of a
// pipeline with several (docs/pipeline-spec.md).
const hdrRollup = "eddy.rollup"

// outputDecoder is dec for a rollup that writes Avro, nil for JSON.
func outputDecoder(rs *topology.Spec, dec *schema.Decoder) *schema.Decoder {
	if rs.Output.Format != topology.FormatAvro {
		return nil
	}
	return dec
}

// decodeResult decodes a result of the rollup whose spec is spec (one of
// RollupSpecs).
func decodeResult(ctx context.Context, spec *topology.Spec, dec *schema.Decoder, r *kgo.Record) (Result, error) {
	res := Result{Rollup: spec.RollupName, Key: map[string]string{}, Values: map[string]*float64{}}
	var m map[string]any
	var err error
	if dec != nil {
		m, err = dec.Decode(ctx, r.Value)
	} else {
		err = json.Unmarshal(r.Value, &m)
	}
	if err != nil {
		return res, fmt.Errorf("eddytest: decode result %q: %w", r.Value, err)
	}
	for _, k := range spec.Key {
		if s, ok := m[k].(string); ok {
			res.Key[k] = s
		}
	}
	res.WindowStart, res.WindowEnd = asTime(m[schema.FieldWindowStart]), asTime(m[schema.FieldWindowEnd])
	for _, a := range spec.Aggregates {
		if f, ok := asFloat(m[a.Name]); ok {
			res.Values[a.Name] = &f
		} else {
			res.Values[a.Name] = nil
		}
	}
	return res, nil
}

func decodeAlert(ctx context.Context, dec *schema.Decoder, r *kgo.Record) (Alert, error) {
	var a Alert
	if dec == nil {
		if err := json.Unmarshal(r.Value, &a.Alert); err != nil {
			return a, fmt.Errorf("eddytest: decode alert %q: %w", r.Value, err)
		}
		return a, nil
	}
	m, err := dec.Decode(ctx, r.Value)
	if err != nil {
		return a, fmt.Errorf("eddytest: decode alert: %w", err)
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	strMap := func(k string) map[string]string {
		out := map[string]string{}
		if mm, ok := m[k].(map[string]any); ok {
			for k, v := range mm {
				out[k], _ = v.(string)
			}
		}
		return out
	}
	num := func(k string) *float64 {
		if f, ok := asFloat(m[k]); ok {
			return &f
		}
		return nil
	}
	tm := func(k string) *string {
		if t := asTime(m[k]); !t.IsZero() {
			s := engine.FormatTime(t.UnixMilli())
			return &s
		}
		return nil
	}
	a.Alert = processor.Alert{Rule: str("rule"), RuleKind: str("rule_kind"), State: str("state"), Severity: str("severity"),
		Key: strMap("key"), Labels: strMap("labels"), Value: num("value"), Threshold: num("threshold"),
		Baseline: num("baseline"), StdDev: num("stddev"), WindowStart: tm("window_start"), WindowEnd: tm("window_end"),
		Summary: str("summary")}
	if s := tm("started_at"); s != nil {
		a.StartedAt = *s
	}
	if s := tm("at"); s != nil {
		a.At = *s
	}
	return a, nil
}

func asTime(v any) time.Time {
	switch t := v.(type) {
	case string:
		tt, _ := time.Parse(time.RFC3339Nano, t)
		return tt.UTC()
	case time.Time:
		return t.UTC()
	}
	return time.Time{}
}

func asFloat(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case float32:
		return float64(t), true
	case int64:
		return float64(t), true
	case int32:
		return float64(t), true
	case int:
		return float64(t), true
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	}
	return math.NaN(), false
}
