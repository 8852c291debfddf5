package topology

// Describe renders a spec as the plain-words explanation `eddy describe`
// prints. (Long: one paragraph writer per part of a pipeline, in the order
// the output reads; each is short.)

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// exampleTime is the event time of the worked examples in Describe: fixed,
// so the output is deterministic.
var exampleTime = time.Date(2025, time.June, 2, 12, 0, 59, 0, time.UTC)

// describeWidth is the width Describe wraps its paragraphs at.
const describeWidth = 80

// Describe explains the pipeline to a human, like Kafka Streams'
// TopologyDescription but in plain words: the sources, each step a record
// goes through, the store, the topics eddy creates, and how time and
// windows behave, with a worked example computed from the window settings.
// partitions is the source partition count, 0 if unknown. s should be
// valid (see Validate).
//
// With several rollups (Spec.Rollups) it shows the part they share once
// (the source, the steps every record goes through once, and the key and
// repartition topic of each distinct key), then each rollup: its window,
// aggregates, emit mode, output, store, alerts, and for a chained rollup
// what it merges and when its windows close.
func Describe(s *Spec, partitions int32) string {
	d := &describer{s: s, partitions: partitions}
	if s.MultiRollup() {
		d.rollups()
		return strings.TrimRight(d.b.String(), "\n") + "\n"
	}
	d.header()
	d.sources()
	d.steps()
	d.stores()
	d.topics()
	d.timeAndWindows()
	d.alerts()
	return strings.TrimRight(d.b.String(), "\n") + "\n"
}

type describer struct {
	s          *Spec
	partitions int32
	b          strings.Builder
}

func (d *describer) line(format string, args ...any) {
	fmt.Fprintf(&d.b, format, args...)
	d.b.WriteByte('\n')
}

// para writes text wrapped at describeWidth: the first line starts with
// first, the others with as many spaces.
func (d *describer) para(first, text string) {
	indent := strings.Repeat(" ", len(first))
	col := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
			d.b.WriteString(first)
			col = len(first)
		case col+1+len(word) > describeWidth:
			d.b.WriteByte('\n')
			d.b.WriteString(indent)
			col = len(indent)
		default:
			d.b.WriteByte(' ')
			col++
		}
		d.b.WriteString(word)
		col += len(word)
	}
	d.b.WriteByte('\n')
}

func (d *describer) partitionsText() string {
	if d.partitions <= 0 {
		return "one per source partition"
	}
	return fmt.Sprintf("%d, one per source partition", d.partitions)
}

func (d *describer) header() {
	s := d.s
	d.line("Pipeline %q", s.App)
	w := tabwriter.NewWriter(&d.b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  consumer group:\t%s\n", s.GroupID())
	fmt.Fprintf(w, "  tasks:\t%s\n", d.partitionsText())
	fmt.Fprintf(w, "  processing:\t%s\n", strings.ReplaceAll(s.Processing, "_", " "))
	fmt.Fprintf(w, "  commit interval:\t%s\n", fmtDuration(s.CommitInterval))
	if s.MultiRollup() {
		chained := 0
		for _, r := range s.Rollups {
			if r.From != "" {
				chained++
			}
		}
		fmt.Fprintf(w, "  rollups:\t%d (%d chained)\n", len(s.Rollups), chained)
	}
	w.Flush()
	d.line("")
}

func (d *describer) sources() {
	s := d.s
	d.line("Sources")
	format := formatName(s.Source.Format)
	if s.Source.Subject != "" {
		format += fmt.Sprintf(", subject %q", s.Source.Subject)
	}
	w := tabwriter.NewWriter(&d.b, 0, 0, 2, ' ', 0)
	for _, t := range s.Source.Topics {
		fmt.Fprintf(w, "  %s\t(%s)\n", t, format)
	}
	for _, l := range s.Lookups {
		fmt.Fprintf(w, "  %s\t(JSON, compacted: lookup table %q, read whole by every worker)\n", l.Topic, l.Name)
	}
	w.Flush()
	d.line("")
}

// stepper numbers the steps of a list.
type stepper struct {
	d *describer
	n int
}

func (st *stepper) step(text string) {
	st.n++
	st.d.para(fmt.Sprintf("  %d. ", st.n), text)
}

func (d *describer) steps() {
	d.line("Steps, for every record, in order")
	st := &stepper{d: d}
	d.recordSteps(st)
	d.keySteps(st)
	d.aggregateSteps(st)
	d.line("")
}

// recordSteps are the steps every record goes through once, whatever the
// rollups: decode, derived fields, lookups, event time and filter.
func (d *describer) recordSteps(st *stepper) {
	s := d.s
	step := st.step
	dlq := quote(s.DeadLetterTopic)

	if s.Source.Format == FormatAvro {
		subject := ""
		if s.Source.Subject != "" {
			subject = fmt.Sprintf(", which must be registered under subject %q", s.Source.Subject)
		}
		step(fmt.Sprintf("Decode the value: Confluent wire format, Avro, with its schema from the registry%s. "+
			"A record that cannot be decoded goes to the dead-letter topic %s.", subject, dlq))
	} else {
		step(fmt.Sprintf("Decode the value as a JSON object. A record that cannot be decoded goes to the dead-letter topic %s.", dlq))
	}

	for i, df := range s.Derived {
		typ := ""
		if e, err := CompileValue(df.Expr, nil); err == nil && e.Type() != FieldAny {
			typ = " (" + e.Type().String() + ")"
		}
		lead := "Derive"
		if i > 0 {
			lead = "Then derive"
		}
		step(fmt.Sprintf("%s field %q%s = `%s`. A record on which it fails goes to the dead-letter topic %s "+
			"(class expression, header eddy.error.field %q).", lead, df.Name, typ, df.Expr, dlq, df.Name))
	}
	for _, l := range s.Lookups {
		miss := "a record without a match gets "
		if l.OnMiss == OnMissDeadLetter {
			miss = fmt.Sprintf("a record without a match goes to the dead-letter topic %s (class lookup_miss)", dlq)
		} else {
			var defs []string
			for _, f := range l.Fields {
				v, ok := l.Defaults[f]
				if !ok || v == nil {
					defs = append(defs, f+" null")
				} else {
					defs = append(defs, fmt.Sprintf("%s %v", f, v))
				}
			}
			miss += strings.Join(defs, ", ")
		}
		step(fmt.Sprintf("Look up %s in table %q (a local copy of compacted topic %q, the whole table on every worker): "+
			"the matching entry's %s become fields of the record; %s. The table is read to its end before processing starts, "+
			"then kept up to date while records are processed: an update applies to the records processed after it.",
			l.On, l.Name, l.Topic, quoteList(l.Fields), miss))
	}

	future := fmt.Sprintf("A record more than %s ahead of the wall clock goes to the dead-letter topic, "+
		"so one bad clock cannot close every window.", fmtDuration(s.Time.MaxFuture))
	if s.Time.Field != "" {
		step(fmt.Sprintf("Event time from field %q (milliseconds since the Unix epoch, or an RFC 3339 string); "+
			"a record without a valid time goes to the dead-letter topic. %s", s.Time.Field, future))
	} else {
		step("Event time is the Kafka record timestamp. " + future)
	}

	if s.Filter != "" {
		step(fmt.Sprintf("Filter: keep records where `%s`; the others are skipped and counted.", s.Filter))
	}

}

// keySteps key the records and repartition them by the key.
func (d *describer) keySteps(st *stepper) {
	s := d.s
	step := st.step
	key := "[" + strings.Join(s.Key, ", ") + "]"
	step(fmt.Sprintf("Key by %s.", key))

	if s.NeedsRepartition() {
		step(fmt.Sprintf("Repartition through topic %q: the source records are not keyed by %s in Kafka, "+
			"so eddy re-keys them and writes them there, so that every record of a key is processed by the same task. "+
			"(If the producers already key records by these fields, set source.keyed_by_group_key: true to skip this step.)",
			s.RepartitionTopic(), key))
	} else {
		step(fmt.Sprintf("No repartition: the source records are already keyed by %s (source.keyed_by_group_key: true), "+
			"so every record of a key is in the same partition.", key))
	}

}

// aggregateSteps window, aggregate, emit and write the results of one
// rollup.
func (d *describer) aggregateSteps(st *stepper) {
	s := d.s
	step := st.step
	if s.From != "" {
		step(fmt.Sprintf("Merge the final results of rollup %q: every window it closes (its final result, also when it emits on update) "+
			"is merged into the window of this rollup that contains it, in the same task, with its key %s.", s.From, keyText(s.Key)))
		step("Window: " + windowSummary(s.Window) + ": a window closes once every window of " + quote(s.From) + " inside it has closed.")
		st.n++
		d.para(fmt.Sprintf("  %d. ", st.n), fmt.Sprintf("Aggregate into store %q, per key and window, merging those of %q:", s.Store, s.From))
		for _, a := range s.Aggregates {
			d.para("       "+a.Name+": ", chainedAggregateText(a, s.From))
		}
	} else {
		step("Window: " + windowSummary(s.Window) + ".")
		st.n++
		d.line("  %d. Aggregate into store %q, per key and window:", st.n, s.Store)
		w := tabwriter.NewWriter(&d.b, 0, 0, 2, ' ', 0)
		for _, a := range s.Aggregates {
			fmt.Fprintf(w, "       %s\t%s\n", a.Name, aggregateText(a))
		}
		w.Flush()
	}

	switch s.Emit {
	case EmitUpdate:
		step(fmt.Sprintf("Emit on update: a result whenever a window's value changes, at most once per key and window every %s.",
			fmtDuration(s.CommitInterval)))
	default:
		step("Emit on close: one final result per key and window, when the window closes.")
	}

	fields := append([]string{"key", "window_start", "window_end"}, s.Key...)
	for _, a := range s.Aggregates {
		fields = append(fields, a.Name)
	}
	step(fmt.Sprintf("Sink: topic %q (%s), one record per result with fields %s.",
		s.Output.Topic, formatName(s.Output.Format), strings.Join(fields, ", ")))
}

func (d *describer) stores() {
	s := d.s
	d.line("Stores")
	d.para(fmt.Sprintf("  %s  ", s.Store), fmt.Sprintf("window store: the aggregates per key and window, "+
		"in Pebble on local disk, backed by the changelog topic %q, from which it is rebuilt when needed. "+
		"Windows are removed once closed.", s.ChangelogTopic()))
	d.line("")
}

func (d *describer) topics() {
	d.line("Topics eddy writes (created with these settings when missing)")
	w := tabwriter.NewWriter(&d.b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  NAME\tPARTITIONS\tCLEANUP\tTIMESTAMP\tRETENTION\tPURPOSE\n")
	for _, t := range d.s.Topics(d.partitions) {
		parts := "one per source partition"
		if t.Partitions > 0 {
			parts = fmt.Sprint(t.Partitions)
		}
		if !t.Copartitioned {
			parts = "as source, if created"
			if t.Partitions > 0 {
				parts = fmt.Sprintf("%d, if created", t.Partitions)
			}
		}
		ts := t.TimestampType
		if ts == "" {
			ts = "broker default"
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", t.Name, parts, t.CleanupPolicy, ts, t.RetentionText(), t.Purpose)
	}
	w.Flush()
	d.line("")
	d.para("  ", "Nothing eddy writes expires by time before it is read: the repartition topic has no time retention "+
		"(eddy deletes its records once committed), and the topics others read are stamped with the time of the write "+
		"(LogAppendTime), so a replay of old data is kept as long as live results. Topics that already exist are not "+
		"changed: `eddy run` (at start), `eddy describe --brokers` and `eddy reset --dry-run` check their settings and "+
		"say how to fix any that would delete what eddy writes (see docs/operations.md, \"How eddy keeps its topics\").")
	d.line("")
}

// streamTimeRule says in plain words what a task's stream time is.
func (d *describer) streamTimeRule() string {
	s := d.s
	inputs := "every partition of " + quoteList(s.Source.Topics)
	if s.NeedsRepartition() {
		return "Each input partition (" + inputs + ") has a watermark: the highest event time read from it. " +
			"Records are regrouped by key through the repartition topic, which also carries the watermarks, and each task's " +
			"stream time is the lowest watermark of all input partitions: windows wait for the slowest partition, " +
			"so producers that send in bursts, or a worker that fails over, do not make on-time records late. " +
			"Windows close by stream time, not by the wall clock, so replaying old records gives the same results as processing them live."
	}
	if len(s.Source.Topics) > 1 {
		return "Each input partition has a watermark: the highest event time read from it. Task N reads partition N of " +
			quoteList(s.Source.Topics) + "; its stream time is the lowest of those partitions' watermarks. " +
			"Windows close by stream time, not by the wall clock, so replaying old records gives the same results as processing them live."
	}
	return "Each task reads one partition of " + quoteList(s.Source.Topics) + "; its stream time is the partition's watermark, " +
		"the highest event time read from it. Windows close by stream time, not by the wall clock, " +
		"so replaying old records gives the same results as processing them live."
}

func (d *describer) timeAndWindows() {
	s := d.s
	d.line("Time and windows, in plain words")
	d.para("  ", d.streamTimeRule())
	d.line("")
	d.para("  ", windowExplanation(s.Window))
	d.line("")
	d.para("  ", d.windowExample())
	d.line("")
	d.idleParagraph()
	d.line("")
	d.emitParagraph()
	d.line("")
	d.processingParagraph()
}

func (d *describer) idleParagraph() {
	s := d.s
	d.para("  ", fmt.Sprintf("Idle is not stalled. An input partition with nothing to read for %s (idle_timeout) is left out of the minimum; "+
		"when every input partition is idle, wall-clock time advances stream time so windows still close and absence alerts fire. "+
		"An input partition that has records waiting but makes no progress (its worker died, it is paused for the schema registry, "+
		"restoring or rebalancing) holds windows back for up to %s (max_wait); then stream time moves on without it, "+
		"eddy logs which partition held things up, and its records older than the windows closed meanwhile go to %q.",
		fmtDuration(s.IdleTimeout), fmtDuration(s.MaxWait), s.LateTopic))
}

func (d *describer) emitParagraph() {
	s := d.s
	switch s.Emit {
	case EmitUpdate:
		d.para("  ", fmt.Sprintf("Emit on update: results are written as windows change, at most once per key and window every %s; "+
			"the last result written for a window is its final value.", fmtDuration(s.CommitInterval)))
	default:
		d.para("  ", "Emit on close: each window's result is written once, when the window closes, and never changes; "+
			"nothing is written for a window before then.")
	}
}

func (d *describer) processingParagraph() {
	s := d.s
	outputs := quote(s.Output.Topic)
	if s.MultiRollup() {
		var names []string
		for _, r := range s.Rollups {
			names = append(names, r.Output.Topic)
		}
		outputs = quoteList(names)
	}
	switch s.Processing {
	case ExactlyOnce:
		d.para("  ", fmt.Sprintf("Processing exactly once: results, state changes and input offsets are committed together in one "+
			"Kafka transaction every %s, so every record counts exactly once in the results, even across crashes; "+
			"consumers of %s should read with isolation.level=read_committed.", fmtDuration(s.CommitInterval), outputs))
	default:
		d.para("  ", fmt.Sprintf("Processing at least once: offsets are committed every %s after the results are written, "+
			"so after a crash the records since the last commit are processed again and some results may be written twice; "+
			"no record is lost.", fmtDuration(s.CommitInterval)))
	}
	if n := s.StandbyReplicas; n > 0 {
		copies := "one other worker keeps"
		if n > 1 {
			copies = fmt.Sprintf("%d other workers keep", n)
		}
		d.para("  ", fmt.Sprintf("Standby replicas: %s a warm copy of each task's state by reading its changelog as it is written "+
			"(while the group has that many other workers), so when a worker dies its tasks resume elsewhere after "+
			"restoring only the last changelog records, not the whole state.", copies))
	}
}

// windowSummary is one line about the window, for the steps.
func windowSummary(w Window) string {
	grace := "no grace period"
	if w.Grace > 0 {
		grace = "grace " + fmtDuration(w.Grace)
	}
	switch w.Type {
	case WindowTumbling:
		return fmt.Sprintf("tumbling windows of %s, %s", fmtDuration(w.Size), grace)
	case WindowHopping:
		return fmt.Sprintf("hopping windows of %s starting every %s, %s", fmtDuration(w.Size), fmtDuration(w.Advance), grace)
	case WindowSession:
		return fmt.Sprintf("session windows with a gap of %s, %s", fmtDuration(w.Gap), grace)
	}
	return w.Type + " windows"
}

// windowExplanation says what the window type means.
func windowExplanation(w Window) string {
	switch w.Type {
	case WindowTumbling:
		return fmt.Sprintf("Tumbling windows of %s: back-to-back windows that do not overlap, aligned to the Unix epoch "+
			"(UTC), so every record belongs to exactly one window.", fmtDuration(w.Size))
	case WindowHopping:
		lo, hi := w.SizeMillis()/w.AdvanceMillis(), (w.SizeMillis()+w.AdvanceMillis()-1)/w.AdvanceMillis()
		count := fmt.Sprint(lo)
		if lo != hi {
			count = fmt.Sprintf("%d or %d", lo, hi)
		}
		return fmt.Sprintf("Hopping windows of %s starting every %s: overlapping windows aligned to the Unix epoch (UTC), "+
			"so every record belongs to %s windows and counts in each.", fmtDuration(w.Size), fmtDuration(w.Advance), count)
	case WindowSession:
		return fmt.Sprintf("Session windows with a gap of %[1]s: a key's records at most %[1]s apart form one session, "+
			"which ends when the key gets no record for more than %[1]s. Sessions have no fixed size. A record that "+
			"arrives out of order and falls within %[1]s of two sessions of its key merges them into one.", fmtDuration(w.Gap))
	}
	return ""
}

// windowExample works through the fate of a record for exampleTime.
func (d *describer) windowExample() string {
	s := d.s
	w := s.Window
	t := exampleTime
	late := quote(s.LateTopic)
	graceText := fmt.Sprintf(" plus the %s grace", fmtDuration(w.Grace))
	if w.Grace == 0 {
		graceText = "; no grace period"
	}
	example := fmt.Sprintf("Example (times are UTC on %s): ", t.Format("2006-01-02"))

	switch w.Type {
	case WindowTumbling, WindowHopping:
		var wins []string
		starts := w.Starts(t.UnixMilli())
		if len(starts) == 0 {
			return ""
		}
		for _, st := range starts {
			wins = append(wins, fmt.Sprintf("[%s, %s)", fmtClock(fromMillis(st)), fmtClock(fromMillis(st+w.SizeMillis()))))
		}
		firstClose := fromMillis(w.Rule().CloseTime(starts[0], starts[0]+w.SizeMillis()))
		if len(starts) == 1 {
			return example + fmt.Sprintf("a record for %s belongs to window %s; that window closes when stream time reaches %s "+
				"(its end%s); a record for %s arriving after %s stream time is late and goes to %s.",
				fmtClock(t), wins[0], fmtClock(firstClose), graceText, fmtClock(t), fmtClock(firstClose), late)
		}
		lastClose := fromMillis(w.Rule().CloseTime(starts[len(starts)-1], starts[len(starts)-1]+w.SizeMillis()))
		return example + fmt.Sprintf("a record for %s belongs to %d windows: %s. The earliest closes when stream time reaches %s "+
			"and the latest when it reaches %s (each window's end%s). A record for %s arriving after %s stream time "+
			"is late for the windows that have closed and still counts in the others; a record for %s arriving after "+
			"%s stream time is late and goes to %s.",
			fmtClock(t), len(starts), listWindows(wins), fmtClock(firstClose), fmtClock(lastClose), graceText,
			fmtClock(t), fmtClock(firstClose), fmtClock(t), fmtClock(lastClose), late)
	case WindowSession:
		half := w.Gap / 2
		if w.Gap >= 2*time.Second {
			half = half.Truncate(time.Second)
		} else {
			half = half.Truncate(time.Millisecond)
		}
		t2 := t.Add(half)
		// The session closes when stream time reaches CloseTime, that is
		// once it passes the instant before.
		closes := fromMillis(w.Rule().CloseTime(t.UnixMilli(), t2.UnixMilli()) - 1)
		return example + fmt.Sprintf("records for one key at %s and %s (%s apart, within the %s gap) form one session "+
			"[%s, %s]; a record for that key after %s (more than %s after %s) starts a new session. "+
			"The session [%s, %s] closes when stream time passes %s (its last record plus the %s gap%s); "+
			"a record for %s arriving after %s stream time is late and goes to %s.",
			fmtClock(t), fmtClock(t2), fmtDuration(half), fmtDuration(w.Gap),
			fmtClock(t), fmtClock(t2), fmtClock(t2.Add(w.Gap)), fmtDuration(w.Gap), fmtClock(t2),
			fmtClock(t), fmtClock(t2), fmtClock(closes), fmtDuration(w.Gap), graceText,
			fmtClock(t), fmtClock(closes), late)
	}
	return ""
}

// listWindows lists windows as "a, b and c", eliding the middle of long lists.
func listWindows(wins []string) string {
	if len(wins) > 5 {
		return fmt.Sprintf("%s, %s, ... and %s", wins[0], wins[1], wins[len(wins)-1])
	}
	return strings.Join(wins[:len(wins)-1], ", ") + " and " + wins[len(wins)-1]
}

func aggregateText(a Aggregate) string {
	var text string
	switch a.Op {
	case AggCount:
		text = "count of records"
	case AggSum:
		text = "sum of " + a.Field
	case AggMin:
		text = "minimum of " + a.Field
	case AggMax:
		text = "maximum of " + a.Field
	case AggMean:
		text = "mean (average) of " + a.Field
	case AggDistinct:
		text = "number of distinct values of " + a.Field + " (approximate)"
	case AggQuantile:
		text = percentileText(a.Quantile) + " of " + a.Field + " (approximate)"
	case AggTopK:
		text = fmt.Sprintf("the %d most frequent values of %s with their counts (%s)", a.K, a.Field, TopKErrorText(a.K))
	default:
		text = a.Op + " of " + a.Field
	}
	if a.Where != "" {
		if a.Op == AggCount {
			text += fmt.Sprintf(" where `%s`", a.Where)
		} else {
			text += fmt.Sprintf(", over records where `%s`", a.Where)
		}
	}
	return text
}

// TopKErrorText explains the error bound of a top_k aggregate in plain
// words (the sketch is state.TopK, of capacity TopKCapacity(k)).
func TopKErrorText(k int) string {
	m := TopKCapacity(k)
	return fmt.Sprintf("exact while a window has at most %d distinct values; beyond that each count may be low by at most "+
		"1/%d of the window's records, and a value missing from the list has fewer than that", m, m+1)
}

// percentileText: 0.99 -> "99th percentile", 0.5 -> "50th percentile (median)".
func percentileText(q float64) string {
	p := strings.TrimPrefix(PercentileName(q), "p")
	suffix := "th"
	if !strings.Contains(p, ".") {
		switch {
		case strings.HasSuffix(p, "11"), strings.HasSuffix(p, "12"), strings.HasSuffix(p, "13"):
		case strings.HasSuffix(p, "1"):
			suffix = "st"
		case strings.HasSuffix(p, "2"):
			suffix = "nd"
		case strings.HasSuffix(p, "3"):
			suffix = "rd"
		}
	}
	text := p + suffix + " percentile"
	if q == 0.5 {
		text += " (median)"
	}
	return text
}

func formatName(f string) string {
	switch f {
	case FormatJSON:
		return "JSON"
	case FormatAvro:
		return "Avro"
	}
	return f
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// fmtClock prints a time of day, with milliseconds if any, and with the
// date if it is not exampleTime's.
func fmtClock(t time.Time) string {
	layout := "15:04:05"
	if t.Nanosecond() != 0 {
		layout = "15:04:05.000"
	}
	if y, m, d := t.Date(); y != exampleTime.Year() || m != exampleTime.Month() || d != exampleTime.Day() {
		layout = "2006-01-02 " + layout
	}
	return t.Format(layout)
}

// fmtDuration prints a duration as a user would write it: "1m", not "1m0s".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func fmtRetention(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		days := int64(d / (24 * time.Hour))
		if days == 1 {
			return "1 day"
		}
		return fmt.Sprintf("%d days", days)
	}
	return fmtDuration(d)
}

func (d *describer) alerts() {
	a := d.s.Alerts
	if a == nil {
		return
	}
	d.line("")
	d.line("Alerts, to topic %s (one record per firing or resolved transition)", a.Topic)
	for _, r := range a.Rules {
		var text string
		switch r.Kind {
		case AlertThreshold:
			text = fmt.Sprintf("fires for a key when `%s` holds in %s, and resolves after %s in which it does not (a window without records counts as not holding).",
				r.Condition, inARow(r.ForWindows), plural(r.ResolveWindows, "window"))
		case AlertAbsence:
			text = fmt.Sprintf("fires for a key that has had records when it then receives none for %s of stream time (which follows the wall clock once the input is idle for %s); resolves when its records return. A key silent for %s is forgotten.",
				fmtDuration(r.For), fmtDuration(d.s.IdleTimeout), fmtDuration(r.ForgetAfter))
		case AlertDeviation:
			base := fmt.Sprintf("its moving average over recent windows (weight %g for the newest), armed after %s", r.Alpha, plural(r.MinHistory, "window"))
			if r.Baseline == BaselineSeasonal {
				base = fmt.Sprintf("its values in the same %s slot of previous %s periods, armed after %s", fmtDuration(r.Bucket), fmtDuration(r.Period), plural(r.MinHistory, "period"))
			}
			text = fmt.Sprintf("fires for a key when %s is more than %g standard deviations %s %s, in %s; resolves after %s back to normal.",
				r.Value, r.StdDevs, map[string]string{DirectionAbove: "above", DirectionBelow: "below", DirectionBoth: "away from"}[r.Direction], base,
				inARow(r.ForWindows), plural(r.ResolveWindows, "window"))
		}
		if r.Kind == AlertThreshold {
			text += " " + reportedValue(r)
		}
		d.para("  ", fmt.Sprintf("%s (%s, %s): %s", r.Name, r.Kind, r.Severity, text))
	}
}

// reportedValue says which aggregate a threshold rule's alerts carry as
// their value (and threshold), and where that choice came from.
func reportedValue(r AlertRule) string {
	switch {
	case r.Value == "":
		return "Its alerts carry no value: the condition names no aggregate."
	case r.ValueDefaulted:
		return fmt.Sprintf("Its alerts report %s as their value, the first aggregate the condition names; write `value: AGGREGATE` to report another.", r.Value)
	}
	return fmt.Sprintf("Its alerts report %s as their value (`value:`).", r.Value)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func inARow(n int) string {
	if n == 1 {
		return "a window"
	}
	return fmt.Sprintf("%d windows in a row", n)
}

// quoteList renders names as "a", "b" and "c".
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	switch len(q) {
	case 0:
		return ""
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// rollups describes a pipeline with several rollups: the shared part once,
// then each rollup.
func (d *describer) rollups() {
	s := d.s
	specs := s.RollupSpecs()
	d.header()
	d.sources()

	d.line("Steps, once per record, for all rollups (the source is read and decoded once)")
	st := &stepper{d: d}
	d.recordSteps(st)
	d.sharedKeySteps(st, specs)
	d.line("")

	for i, rs := range specs {
		sub := &describer{s: rs, partitions: d.partitions}
		sub.rollup(s, i)
		d.b.WriteString(sub.b.String())
		d.line("")
	}

	d.line("Stores, one per rollup")
	for _, rs := range specs {
		d.para(fmt.Sprintf("  %s  ", rs.Store), fmt.Sprintf("window store of rollup %q: its aggregates per key and window, "+
			"in Pebble on local disk, backed by the changelog topic %q, from which it is rebuilt when needed. "+
			"Windows are removed once closed.", rs.RollupName, rs.ChangelogTopic()))
	}
	d.line("")
	d.topics()

	d.line("Time, in plain words")
	d.para("  ", d.streamTimeRule())
	d.line("")
	d.para("  ", fmt.Sprintf("Each rollup that reads the records closes its windows by this stream time and its own grace; "+
		"each chained rollup closes its windows when the rollup it reads has closed every window inside them. "+
		"A record that is late for a rollup goes to %q once for that rollup (header eddy.rollup names it), "+
		"and still counts in the rollups whose windows are open.", s.LateTopic))
	d.line("")
	d.idleParagraph()
	d.line("")
	d.processingParagraph()
}

// sharedKeySteps key each record once per distinct key of the rollups
// that read the source, and repartition it by that key.
func (d *describer) sharedKeySteps(st *stepper, specs []*Spec) {
	s := d.s
	var keys [][]string
	users := make(map[string][]string) // by key text: what uses it
	topics := make(map[string]string)
	for _, rs := range specs {
		k := keyText(rs.Key)
		if _, ok := users[k]; !ok {
			keys = append(keys, rs.Key)
			topics[k] = rs.RepartitionTopic()
		}
		u := quote(rs.RollupName)
		if rs.From != "" {
			u += " (chained from " + quote(rs.From) + ")"
		}
		users[k] = append(users[k], u)
	}
	uses := func(k string) string {
		u := users[k]
		if len(u) == 1 {
			return "rollup " + u[0]
		}
		return "rollups " + strings.Join(u[:len(u)-1], ", ") + " and " + u[len(u)-1]
	}
	if !s.NeedsRepartition() {
		k := keyText(keys[0])
		st.step(fmt.Sprintf("Key by %s, for %s. No repartition: the source records are already keyed by %s "+
			"(source.keyed_by_group_key: true), so every record of a key is in the same partition.", k, uses(k), k))
		return
	}
	st.step("Key and repartition, once per distinct key (rollups with the same key share its repartition topic): " +
		"the source records are not keyed by these fields in Kafka, so eddy re-keys each record once per key and " +
		"writes it to that key's repartition topic, so that every record of a key is processed by the same task. " +
		"The fields computed above travel with it.")
	for _, key := range keys {
		k := keyText(key)
		d.para("     - ", fmt.Sprintf("by %s through topic %q, for %s", k, topics[k], uses(k)))
	}
}

// rollup describes one rollup of a multi-rollup pipeline; d.s is its spec
// (RollupSpecs), top the pipeline and i its index.
func (d *describer) rollup(top *Spec, i int) {
	s := d.s
	if s.From == "" {
		d.line("Rollup %q: reads the records above, keyed by %s", s.RollupName, keyText(s.Key))
	} else {
		d.line("Rollup %q: reads the final results of rollup %q", s.RollupName, s.From)
	}
	st := &stepper{d: d}
	d.aggregateSteps(st)
	d.line("")
	if s.From == "" {
		d.para("  ", windowExplanation(s.Window))
		d.line("")
		d.para("  ", d.windowExample())
	} else {
		d.chainTime(top, i)
	}
	d.line("")
	d.emitParagraph()
	d.alerts()
}

// chainTime says when the windows of chained rollup i close, with an
// example.
func (d *describer) chainTime(top *Spec, i int) {
	s := d.s
	root := top.rootOf(i)
	if root < 0 {
		return
	}
	rootName, grace := top.Rollups[root].Name, top.Rollups[root].Window.Grace
	rootWin := top.Rollups[root].Window
	through := fmt.Sprintf("the stream time of rollup %q minus its grace of %s", rootName, fmtDuration(grace))
	if grace == 0 {
		through = fmt.Sprintf("the stream time of rollup %q, which has no grace", rootName)
	}
	d.para("  ", fmt.Sprintf("Tumbling windows of %s, each made of whole windows of rollup %q (%s each). Its stream time is the time through which rollup %q has closed its windows (%s), "+
		"so each of its windows closes exactly when every window of %q inside it has closed: it needs no grace, and has none. "+
		"Every result of %q it merges is final, so nothing it receives is late; a record too late for %q goes to the late topic "+
		"for %q only and never reaches this rollup, so nothing counts twice.",
		fmtDuration(s.Window.Size), s.From, fmtDuration(top.windowOf(s.From).Size), s.From, through, s.From, s.From, rootName, rootName))
	d.line("")
	t := exampleTime.UnixMilli()
	fine, coarse := rootWin.Starts(t), s.Window.Starts(t)
	if len(fine) != 1 || len(coarse) != 1 {
		return
	}
	win := func(w Window, start int64) string {
		return fmt.Sprintf("[%s, %s)", fmtClock(fromMillis(start)), fmtClock(fromMillis(start+w.SizeMillis())))
	}
	via := ""
	if s.From != rootName {
		via = fmt.Sprintf(" (through rollup %q)", s.From)
	}
	end := coarse[0] + s.Window.SizeMillis()
	plus := fmt.Sprintf("the window's end plus the %s grace of %q", fmtDuration(grace), rootName)
	if grace == 0 {
		plus = fmt.Sprintf("the window's end; %q has no grace", rootName)
	}
	d.para("  ", fmt.Sprintf("Example (times are UTC on %s): a record for %s counts in window %s of rollup %q; "+
		"its final result is merged%s into window %s of this rollup, which closes when every window of %q in it has closed: "+
		"when the stream time of %q reaches %s (%s).",
		exampleTime.Format("2006-01-02"), fmtClock(exampleTime), win(rootWin, fine[0]), rootName,
		via, win(s.Window, coarse[0]), s.From, rootName, fmtClock(fromMillis(end+grace.Milliseconds())), plus))
}

// chainedAggregateText says what an aggregate of a chained rollup is and
// how it is merged from the results of the rollup it reads.
func chainedAggregateText(a Aggregate, from string) string {
	f := quote(from)
	var how string
	switch a.Op {
	case AggCount:
		how = "the sum of the counts of " + f + " (exact)"
	case AggSum:
		how = "the sum of the sums of " + f + " (exact)"
	case AggMin:
		how = "the lowest of the minima of " + f + " (exact)"
	case AggMax:
		how = "the highest of the maxima of " + f + " (exact)"
	case AggMean:
		how = "from the sums and counts of " + f + " (exact; not an average of averages)"
	case AggQuantile:
		how = "the sketches of " + f + " merged: the same error as computed from the records themselves, never an average of percentiles"
	case AggDistinct:
		how = "the sketches of " + f + " merged: the same error as computed from the records themselves"
	case AggTopK:
		how = "the summaries of " + f + " merged, within the same bound over this window's records"
	default:
		how = "merged from " + f
	}
	return aggregateText(a) + "; " + how
}
