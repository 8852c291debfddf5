package topology

// Validate: every check of a spec, each naming the field and how to fix
// it. (Long: one check per key of the spec, in the order of the reference
// in docs/pipeline-spec.md.)

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kafka's limit on topic name length.
const maxTopicLen = 249

// Suffixes eddy appends to App (and Store) to name the topics it creates.
const (
	repartitionSuffix = "-repartition"
	changelogSuffix   = "-changelog"
	lateSuffix        = "-late"
	dlqSuffix         = "-dlq"
	alertsSuffix      = "-alerts"
)

// MinCommitInterval is the shortest commit interval Validate accepts.
const MinCommitInterval = 10 * time.Millisecond

// Output fields every result has besides the key fields and aggregates;
// aggregates may not use these names.
var reservedOutputFields = []string{"key", "window_start", "window_end"}

// Validate checks the whole spec and returns every problem at once: the
// errors, each a *FieldError naming the key and saying how to fix it, are
// joined with errors.Join (see FieldErrors). It expects defaults to be
// filled in (Parse does it; call SetDefaults on a Spec built in Go) and
// does not modify the spec.
//
// Expressions are compiled without a schema, which checks their syntax;
// Spec.Compile checks them again against the record schema when one is
// known.
func (s *Spec) Validate() error {
	return joinFieldErrors(s.validate())
}

// specChecker collects the problems of one spec, in the order of its keys.
type specChecker struct {
	errs []*FieldError
}

func (c *specChecker) add(field, problem, fix string) {
	c.errs = append(c.errs, &FieldError{Field: field, Problem: problem, Fix: fix})
}

func (s *Spec) validate() []*FieldError {
	c := &specChecker{}
	s.validateNames(c)
	s.validateSource(c)
	s.validateTime(c)
	s.validateDerived(c)
	s.validateLookups(c)
	if s.Filter != "" {
		if _, err := CompileBool(s.Filter, nil); err != nil {
			c.errs = append(c.errs, exprFieldError("filter", err))
		}
	}
	if s.MultiRollup() {
		s.validateRollups(c)
	} else {
		s.validateKey(c)
		s.validateWindow(c)
		s.validateAggregates(c)
		s.validateEmit(c)
		s.validateOutput(c)
		s.validateAlerts(c)
	}
	s.validateTopicCollisions(c)
	switch s.Processing {
	case AtLeastOnce, ExactlyOnce:
	default:
		c.add("processing", oneOfProblem(s.Processing, AtLeastOnce, ExactlyOnce),
			`write "processing: at_least_once" (the default) or "processing: exactly_once"`)
	}
	if s.CommitInterval < MinCommitInterval {
		c.add("commit_interval", fmt.Sprintf("must be at least %s, not %s", fmtDuration(MinCommitInterval), fmtDuration(s.CommitInterval)),
			`write e.g. "commit_interval: 1s" (the default)`)
	}
	if s.StandbyReplicas < 0 || s.StandbyReplicas >= MaxStandbyReplicas {
		c.add("standby_replicas", fmt.Sprintf("must be 0 to %d, not %d", MaxStandbyReplicas-1, s.StandbyReplicas),
			`write e.g. "standby_replicas: 1" (one other worker keeps each task's state warm), or leave it out for none`)
	}
	if s.IdleTimeout <= 0 {
		c.add("idle_timeout", fmt.Sprintf("must be positive, not %s", fmtDuration(s.IdleTimeout)),
			`write e.g. "idle_timeout: 10s" (the default); to effectively disable it, use a large value such as "24h"`)
	}
	if s.MaxWait <= 0 {
		c.add("max_wait", fmt.Sprintf("must be positive, not %s", fmtDuration(s.MaxWait)),
			`write e.g. "max_wait: 2m" (the default): longer than a worker's session timeout plus its restore`)
	}
	return c.errs
}

func (s *Spec) validateEmit(c *specChecker) {
	switch s.Emit {
	case EmitClose, EmitUpdate:
	default:
		c.add("emit", oneOfProblem(s.Emit, EmitClose, EmitUpdate),
			`write "emit: close" for one final result per window (the default) or "emit: update" for a result on every change`)
	}
}

// appTopicNames are the names of the topics eddy names after App (and
// the stores and rollup names): repartition, changelog and default
// alerts topics.
func (s *Spec) appTopicNames() []string {
	if !s.MultiRollup() {
		names := []string{s.RepartitionTopic()}
		if s.Store != "" {
			names = append(names, s.ChangelogTopic())
		}
		return names
	}
	var names []string
	for _, rs := range s.RollupSpecs() {
		names = append(names, rs.RepartitionTopic())
		if rs.Store != "" {
			names = append(names, rs.ChangelogTopic())
		}
		if t := rs.AlertsTopic(); t != "" && t == s.App+"-"+rs.RollupName+alertsSuffix {
			names = append(names, t)
		}
	}
	return names
}

func (s *Spec) validateNames(c *specChecker) {
	switch {
	case s.App == "":
		c.add("app", "must be set: it names the consumer group and every topic eddy creates", `write e.g. "app: checkout-latency"`)
	default:
		if p, fix := topicNameProblem(s.App, maxTopicLen); p != "" {
			c.add("app", p, fix)
			break
		}
		// The longest topic name built from App.
		longest := ""
		for _, t := range s.appTopicNames() {
			if len(t) > len(longest) {
				longest = t
			}
		}
		if len(longest) > maxTopicLen {
			fix := "shorten app (or store)"
			if s.MultiRollup() {
				fix = "shorten app (or the rollup name or store in that topic name)"
			}
			c.add("app", fmt.Sprintf("is too long: topic %q would be %d characters long, and Kafka allows at most %d", longest, len(longest), maxTopicLen), fix)
		}
	}
	if s.MultiRollup() {
		return // each rollup has its store (validateRollups)
	}
	if s.Store == "" {
		c.add("store", "must not be empty: it names the window store and its changelog topic", `remove the key to use the default "windows", or write e.g. "store: windows"`)
	} else if p, fix := topicNameProblem(s.Store, maxTopicLen); p != "" {
		c.add("store", p, fix)
	}
}

func (s *Spec) validateSource(c *specChecker) {
	if s.Source.KeyedByGroupKey && len(s.Source.Topics) > 1 {
		c.add("source.keyed_by_group_key", fmt.Sprintf("is supported with one source topic only (got %d)", len(s.Source.Topics)),
			"leave it false to repartition, or read one topic")
	}
	if len(s.Source.Topics) == 0 {
		c.add("source.topics", "must list at least one topic to read", `write e.g. "topics: [requests]" under "source:"`)
	}
	seen := make(map[string]bool)
	for i, t := range s.Source.Topics {
		f := fmt.Sprintf("source.topics[%d]", i)
		if p, fix := topicNameProblem(t, maxTopicLen); p != "" {
			c.add(f, p, fix)
		} else if seen[t] {
			c.add(f, fmt.Sprintf("%q is listed twice", t), "remove one of them")
		}
		seen[t] = true
	}
	switch s.Source.Format {
	case FormatJSON, FormatAvro:
	default:
		c.add("source.format", oneOfProblem(s.Source.Format, FormatJSON, FormatAvro),
			`write "format: json" (the default) or "format: avro" (Confluent wire format with a schema registry)`)
	}
	if s.Source.Subject != "" && s.Source.Format != FormatAvro {
		c.add("source.subject", "is only used with format avro", `remove it, or write "format: avro"`)
	}
}

func (s *Spec) validateTime(c *specChecker) {
	if s.Time.Field != "" && strings.TrimSpace(s.Time.Field) != s.Time.Field {
		c.add("time.field", fmt.Sprintf("%q has spaces around the field name", s.Time.Field), "remove them")
	}
	if s.Time.MaxFuture <= 0 {
		c.add("time.max_future", fmt.Sprintf("must be positive, not %s", fmtDuration(s.Time.MaxFuture)),
			`write e.g. "max_future: 1h" (the default)`)
	}
}

// validateDerived checks the derived fields: names, and expressions that
// compile and use only the fields before them.
func (s *Spec) validateDerived(c *specChecker) {
	later := make(map[string]string) // name -> what computes it
	for i, d := range s.Derived {
		if d.Name != "" {
			later[d.Name] = fmt.Sprintf("derived[%d]", i)
		}
	}
	for i, l := range s.Lookups {
		for _, f := range l.Fields {
			later[f] = fmt.Sprintf("lookup %q (lookups[%d])", l.Name, i)
		}
	}
	seen := make(map[string]string)
	for i, d := range s.Derived {
		f := func(key string) string { return fmt.Sprintf("derived[%d].%s", i, key) }
		switch {
		case d.Name == "":
			c.add(f("name"), "must be set: it is the name of the new field", `write e.g. "name: status_class"`)
		case !isIdentifier(d.Name):
			c.add(f("name"), fmt.Sprintf("%q is not a valid name: use letters, digits and '_', not starting with a digit", d.Name),
				fmt.Sprintf("write e.g. %q", identifierLike(d.Name)))
		case seen[d.Name] != "":
			c.add(f("name"), fmt.Sprintf("%q is also computed by %s", d.Name, seen[d.Name]), "names must be unique; choose another")
		}
		if d.Name != "" && seen[d.Name] == "" {
			seen[d.Name] = fmt.Sprintf("derived[%d]", i)
		}
		if d.Expr == "" {
			c.add(f("expr"), "must be set: it computes the field", "write e.g. `int(status / 100)` or `latency_ms > 500`")
			continue
		}
		e, err := CompileValue(d.Expr, nil)
		if err != nil {
			c.errs = append(c.errs, exprFieldError(f("expr"), err))
			continue
		}
		for _, name := range e.Fields() {
			if by, ok := later[name]; ok && (name == d.Name || seen[name] == "" || strings.HasPrefix(by, "lookup")) {
				what := "is computed by " + by + ", after this field"
				if name == d.Name {
					what = "is this field itself"
				}
				c.add(f("expr"), fmt.Sprintf("uses %q, which %s", name, what),
					"a derived field may use the record's fields and the derived fields listed before it; lookups come after every derived field")
			}
		}
	}
	for i, l := range s.Lookups {
		for j, name := range l.Fields {
			if by, ok := seen[name]; ok {
				c.add(fmt.Sprintf("lookups[%d].fields[%d]", i, j), fmt.Sprintf("%q is also computed by %s", name, by), "names must be unique; choose another")
			}
			seen[name] = fmt.Sprintf("lookup %q", l.Name)
		}
	}
}

// validateLookups checks the lookup tables' settings (their topics are
// checked with the other topics, in validateTopicCollisions).
func (s *Spec) validateLookups(c *specChecker) {
	names := make(map[string]bool)
	for i, l := range s.Lookups {
		f := func(key string) string { return fmt.Sprintf("lookups[%d].%s", i, key) }
		switch {
		case l.Name == "":
			c.add(f("name"), "must be set: it names the table and its local directory", `write e.g. "name: owners"`)
		case names[l.Name]:
			c.add(f("name"), fmt.Sprintf("%q names an earlier lookup", l.Name), "names must be unique; choose another")
		default:
			if p, fix := topicNameProblem(l.Name, 100); p != "" {
				c.add(f("name"), p, fix)
			}
		}
		names[l.Name] = true
		if l.Topic == "" {
			c.add(f("topic"), "must be set: the compacted topic that holds the table", `write e.g. "topic: endpoint-owners"`)
		} else if p, fix := topicNameProblem(l.Topic, maxTopicLen); p != "" {
			c.add(f("topic"), p, fix)
		}
		if strings.TrimSpace(l.On) == "" {
			c.add(f("on"), "must be set: the record field whose value is looked up", `write e.g. "on: endpoint"`)
		}
		if len(l.Fields) == 0 {
			c.add(f("fields"), "must list at least one field of the table's values", `write e.g. "fields: [team]"`)
		}
		fields := make(map[string]bool)
		for j, name := range l.Fields {
			switch {
			case !isIdentifier(name):
				c.add(fmt.Sprintf("lookups[%d].fields[%d]", i, j), fmt.Sprintf("%q is not a valid name: use letters, digits and '_', not starting with a digit", name),
					fmt.Sprintf("write e.g. %q", identifierLike(name)))
			case fields[name]:
				c.add(fmt.Sprintf("lookups[%d].fields[%d]", i, j), fmt.Sprintf("%q is listed twice", name), "remove one of them")
			}
			fields[name] = true
		}
		switch l.OnMiss {
		case OnMissDefault:
			for k := range l.Defaults {
				if !fields[k] {
					c.add(f("defaults."+k), fmt.Sprintf("%q is not one of the lookup's fields", k), "list it under fields, or remove it")
				}
			}
		case OnMissDeadLetter:
			if len(l.Defaults) > 0 {
				c.add(f("defaults"), "are not used with on_miss dead_letter", `remove them, or write "on_miss: default"`)
			}
		default:
			c.add(f("on_miss"), oneOfProblem(l.OnMiss, OnMissDefault, OnMissDeadLetter),
				`write "on_miss: default" (the default: the fields take their defaults, or null) or "on_miss: dead_letter"`)
		}
	}
}

func (s *Spec) validateKey(c *specChecker) {
	if len(s.Key) == 0 {
		c.add("key", "must list at least one field to group by", `write e.g. "key: [endpoint]"`)
	}
	seen := make(map[string]bool)
	for i, k := range s.Key {
		f := fmt.Sprintf("key[%d]", i)
		switch {
		case strings.TrimSpace(k) == "":
			c.add(f, "is empty", "write a field name, or remove the entry")
		case strings.TrimSpace(k) != k:
			c.add(f, fmt.Sprintf("%q has spaces around the field name", k), "remove them")
		case seen[k]:
			c.add(f, fmt.Sprintf("%q is listed twice", k), "remove one of them")
		}
		seen[k] = true
	}
}

func (s *Spec) validateWindow(c *specChecker) {
	w := s.Window
	notFor := func(field string, d time.Duration, kind, fix string) {
		if d != 0 {
			c.add("window."+field, "is not used by "+kind+" windows", fix)
		}
	}
	positive := func(field string, d time.Duration, problem, example string) {
		switch {
		case d == 0:
			c.add("window."+field, problem, fmt.Sprintf("write e.g. %q", field+": "+example))
		case d < 0:
			c.add("window."+field, fmt.Sprintf("must be positive, not %s", fmtDuration(d)), fmt.Sprintf("write e.g. %q", field+": "+example))
		}
	}
	switch w.Type {
	case WindowTumbling:
		positive("size", w.Size, "must be set for a tumbling window", "10s")
		notFor("advance", w.Advance, "tumbling", `remove it, or write "type: hopping" for overlapping windows`)
		notFor("gap", w.Gap, "tumbling", `remove it, or write "type: session" for session windows`)
	case WindowHopping:
		positive("size", w.Size, "must be set for a hopping window", "5m")
		positive("advance", w.Advance, "must be set for a hopping window: how far each window starts after the previous one", "1m")
		if w.Size > 0 && w.Advance > w.Size {
			c.add("window.advance", fmt.Sprintf("(%s) must not be longer than window.size (%s): records between windows would belong to none",
				fmtDuration(w.Advance), fmtDuration(w.Size)), "make advance at most size")
		}
		notFor("gap", w.Gap, "hopping", `remove it, or write "type: session" for session windows`)
	case WindowSession:
		positive("gap", w.Gap, "must be set for a session window: how long without records ends a session", "5m")
		notFor("size", w.Size, "session", "remove it: a session lasts as long as records keep coming less than gap apart")
		notFor("advance", w.Advance, "session", "remove it")
	case "":
		c.add("window.type", "must be set", `write "type: tumbling", "type: hopping" or "type: session" under "window:"`)
	default:
		c.add("window.type", oneOfProblem(w.Type, WindowTumbling, WindowHopping, WindowSession),
			"tumbling: back-to-back windows; hopping: overlapping windows; session: windows that end after a gap without records")
	}
	if w.Grace < 0 {
		c.add("window.grace", fmt.Sprintf("must not be negative, not %s", fmtDuration(w.Grace)), `write e.g. "grace: 30s", or "grace: 0s" to accept no late records`)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"size", w.Size}, {"advance", w.Advance}, {"gap", w.Gap}, {"grace", w.Grace}} {
		if d.v%time.Millisecond != 0 {
			c.add("window."+d.field, fmt.Sprintf("%s is not a whole number of milliseconds, the resolution of Kafka timestamps", fmtDuration(d.v)),
				"round it to milliseconds")
		}
	}
}

// opSuggestions maps ops people write from other tools to eddy's.
var opSuggestions = map[string]string{
	"topk": "top_k", "top": "top_k", "heavy_hitters": "top_k", "top-k": "top_k",
	"avg": "mean", "average": "mean", "median": "p50", "total": "sum",
	"unique": "distinct", "count_distinct": "distinct", "cardinality": "distinct",
	"minimum": "min", "maximum": "max",
}

func (s *Spec) validateAggregates(c *specChecker) {
	if len(s.Aggregates) == 0 {
		c.add("aggregates", "must list at least one aggregate",
			`write e.g. "aggregates: [{name: requests, op: count}]"`)
	}
	reserved := make(map[string]string)
	for _, r := range reservedOutputFields {
		reserved[r] = "every result has a field of that name"
	}
	for _, k := range s.Key {
		reserved[k] = "it is a key field, which every result has"
	}
	seen := make(map[string]bool)
	for i, a := range s.Aggregates {
		f := func(key string) string { return fmt.Sprintf("aggregates[%d].%s", i, key) }
		switch {
		case a.Name == "":
			c.add(f("name"), "must be set: it is the name of the result field", `write e.g. "name: p99_latency_ms"`)
		case !isIdentifier(a.Name):
			c.add(f("name"), fmt.Sprintf("%q is not a valid name: use letters, digits and '_', not starting with a digit", a.Name),
				fmt.Sprintf("write e.g. %q", identifierLike(a.Name)))
		case reserved[a.Name] != "":
			c.add(f("name"), fmt.Sprintf("%q is taken: %s", a.Name, reserved[a.Name]), "choose another name")
		case seen[a.Name]:
			c.add(f("name"), fmt.Sprintf("%q is used by an earlier aggregate", a.Name), "names must be unique; choose another")
		}
		seen[a.Name] = true

		what := "this aggregate"
		if a.Name != "" {
			what = fmt.Sprintf("aggregate %q", a.Name)
		}
		switch a.Op {
		case AggCount:
			if a.Field != "" {
				c.add(f("field"), "is not used by count, which counts records",
					fmt.Sprintf(`remove it; to count only records that have %[1]s, write "where: %[1]s != nil"`, a.Field))
			}
		case AggTopK:
			if a.Field == "" {
				c.add(f("field"), fmt.Sprintf("must be set for op top_k (%s)", what), `write the field whose most frequent values to report, e.g. "field: endpoint"`)
			}
			switch {
			case a.K == 0:
				c.add(f("k"), fmt.Sprintf("must be set for op top_k (%s): how many values to report", what), `write e.g. "k: 10"`)
			case a.K < 0 || a.K > MaxTopK:
				c.add(f("k"), fmt.Sprintf("must be from 1 to %d, not %d", MaxTopK, a.K), `write e.g. "k: 10"`)
			}
		case AggSum, AggMin, AggMax, AggMean, AggDistinct:
			if a.Field == "" {
				c.add(f("field"), fmt.Sprintf("must be set for op %s (%s)", a.Op, what), `write the input field, e.g. "field: latency_ms"`)
			}
		case AggQuantile:
			if a.Quantile <= 0 || a.Quantile >= 1 {
				c.add(f("op"), "quantile needs the percentile written in the op", `write e.g. "op: p99" or "op: p99.9"`)
			} else if a.Field == "" {
				c.add(f("field"), fmt.Sprintf("must be set for op %s (%s)", PercentileName(a.Quantile), what), `write the input field, e.g. "field: latency_ms"`)
			}
		case "":
			c.add(f("op"), fmt.Sprintf("must be set (%s)", what), "write one of count, sum, min, max, mean, distinct, top_k, or a percentile such as p50, p99, p99.9")
		default:
			problem := fmt.Sprintf("%q is not a known op", a.Op)
			fix := "write one of count, sum, min, max, mean, distinct, top_k, or a percentile such as p50, p99, p99.9"
			lower := strings.ToLower(a.Op)
			if sug, ok := opSuggestions[lower]; ok {
				fix = fmt.Sprintf("did you mean %q?", sug)
			} else if _, ok := ParsePercentile(lower); ok {
				fix = fmt.Sprintf("did you mean %q?", lower)
			} else if isPercentileLike(lower) {
				problem = fmt.Sprintf("%q is not a percentile: write pNN or pNN.N strictly between p0 and p100", a.Op)
				fix = `write e.g. "op: p99" or "op: p99.9"`
			}
			c.add(f("op"), problem, fix)
		}
		if a.K != 0 && a.Op != AggTopK {
			c.add(f("k"), fmt.Sprintf("is only used by op top_k, not %s", a.Op), "remove it")
		}
		if a.Where != "" {
			if _, err := CompileBool(a.Where, nil); err != nil {
				c.errs = append(c.errs, exprFieldError(f("where"), err))
			}
		}
	}
}

func (s *Spec) validateOutput(c *specChecker) {
	if s.Output.Topic == "" {
		c.add("output.topic", "must be set: it is where results go", `write e.g. "topic: checkout-latency-per-minute" under "output:"`)
	} else if p, fix := topicNameProblem(s.Output.Topic, maxTopicLen); p != "" {
		c.add("output.topic", p, fix)
	}
	switch s.Output.Format {
	case FormatJSON, FormatAvro:
	default:
		c.add("output.format", oneOfProblem(s.Output.Format, FormatJSON, FormatAvro),
			`write "format: json" (the default) or "format: avro" (schema derived and registered by eddy)`)
	}
}

// validateTopicCollisions checks that eddy never writes to a topic it reads
// and that no two roles share a topic, except the late and dead-letter
// topics, which may be one topic (headers say why each record is there).
func (s *Spec) validateTopicCollisions(c *specChecker) {
	sources := make(map[string]bool)
	for _, t := range s.Source.Topics {
		sources[t] = true
	}
	// A role of a topic: the key that names it (field, "" for names
	// eddy makes), what it is, and the default name of a topic the user
	// may name (def), which is checked with app.
	type role struct {
		field, name, what, def string
		output                 bool
	}
	var internal, written []role
	if !s.MultiRollup() {
		if s.App != "" {
			if s.NeedsRepartition() {
				internal = append(internal, role{name: s.RepartitionTopic(), what: "eddy's repartition topic"})
			}
			if s.Store != "" {
				internal = append(internal, role{name: s.ChangelogTopic(), what: "the changelog topic of store " + strconv.Quote(s.Store)})
			}
		}
		written = append(written, role{field: "output.topic", name: s.Output.Topic, what: "the output topic", output: true})
	} else {
		specs := s.RollupSpecs()
		if s.App != "" {
			seen := make(map[string]bool)
			for _, rs := range specs {
				if t := rs.RepartitionTopic(); s.NeedsRepartition() && !seen[t] {
					seen[t] = true
					internal = append(internal, role{name: t, what: "a repartition topic of eddy's"})
				}
				if rs.Store != "" {
					internal = append(internal, role{name: rs.ChangelogTopic(),
						what: fmt.Sprintf("the changelog topic of store %q (rollup %q)", rs.Store, rs.RollupName)})
				}
			}
		}
		for i, rs := range specs {
			written = append(written, role{field: fmt.Sprintf("rollups[%d].output.topic", i), name: rs.Output.Topic,
				what: fmt.Sprintf("the output topic of rollup %q", rs.RollupName), output: true})
		}
	}
	written = append(written,
		role{field: "late_topic", name: s.LateTopic, what: "the late topic", def: s.App + lateSuffix},
		role{field: "dead_letter_topic", name: s.DeadLetterTopic, what: "the dead-letter topic", def: s.App + dlqSuffix})
	if !s.MultiRollup() {
		if s.Alerts != nil {
			written = append(written, role{field: "alerts.topic", name: s.Alerts.Topic, what: "the alerts topic", def: s.App + alertsSuffix})
		}
	} else {
		for i, r := range s.Rollups {
			if r.Alerts != nil {
				written = append(written, role{field: fmt.Sprintf("rollups[%d].alerts.topic", i), name: r.Alerts.Topic,
					what: fmt.Sprintf("the alerts topic of rollup %q", r.Name), def: s.App + "-" + r.Name + alertsSuffix})
			}
		}
	}
	for i, l := range s.Lookups {
		if l.Topic == "" {
			continue
		}
		f := fmt.Sprintf("lookups[%d].topic", i)
		if sources[l.Topic] {
			c.add(f, fmt.Sprintf("%q is also a source topic", l.Topic), "a lookup table is a topic of its own, compacted: name another topic")
		}
		for _, r := range internal {
			if l.Topic == r.name {
				c.add(f, fmt.Sprintf("%q is %s", l.Topic, r.what), "name the compacted topic that holds the table")
			}
		}
		for _, w := range written {
			if l.Topic == w.name {
				c.add(f, fmt.Sprintf("%q is %s: eddy would read what it writes", l.Topic, w.what), "name the compacted topic that holds the table")
			}
		}
	}
	for i, t := range s.Source.Topics {
		for _, r := range internal {
			if t == r.name {
				c.add(fmt.Sprintf("source.topics[%d]", i), fmt.Sprintf("%q is %s", t, r.what), "read from another topic, or rename app")
			}
		}
	}
	for i, w := range written {
		if w.name == "" {
			if !w.output && s.App != "" {
				c.add(w.field, "must not be empty", fmt.Sprintf("remove the key to use the default %q", w.def))
			}
			continue
		}
		// Names derived from app are checked with app; output topics
		// with the output (validateOutput).
		derived := w.name == s.App+lateSuffix || w.name == s.App+dlqSuffix || w.name == w.def
		if !w.output && !derived {
			if p, fix := topicNameProblem(w.name, maxTopicLen); p != "" {
				c.add(w.field, p, fix)
				continue
			}
		}
		if sources[w.name] {
			c.add(w.field, fmt.Sprintf("%q is also a source topic: eddy would read what it writes", w.name), "use another topic")
			continue
		}
		clash := false
		for _, r := range internal {
			if w.name == r.name {
				c.add(w.field, fmt.Sprintf("%q is %s", w.name, r.what), "use another topic")
				clash = true
			}
		}
		if clash {
			continue
		}
		for _, earlier := range written[:i] {
			if w.name == earlier.name && !(w.field == "dead_letter_topic" && earlier.field == "late_topic") {
				c.add(w.field, fmt.Sprintf("%q is also %s", w.name, earlier.what), "use another topic")
			}
		}
	}
}

// topicNameProblem says what is wrong with name as a Kafka topic name (or as
// part of one), or returns "" if nothing is.
func topicNameProblem(name string, maxLen int) (problem, fix string) {
	if name == "" {
		return "must not be empty", ""
	}
	var bad []string
	for _, r := range name {
		if !isTopicChar(r) {
			q := strconv.QuoteRune(r)
			if !slices.Contains(bad, q) {
				bad = append(bad, q)
			}
		}
	}
	switch {
	case len(bad) > 0:
		return fmt.Sprintf("%q contains %s, which Kafka does not allow in topic names", name, strings.Join(bad, ", ")),
			fmt.Sprintf("use only letters, digits, '.', '_' and '-', e.g. %q", topicLike(name))
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not allowed by Kafka as a topic name", name), "use letters or digits too"
	case len(name) > maxLen:
		return fmt.Sprintf("is %d characters long, and Kafka allows at most %d", len(name), maxLen), "shorten it"
	}
	return "", ""
}

func isTopicChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// topicLike replaces the characters Kafka does not allow with '-'.
func topicLike(name string) string {
	return strings.Map(func(r rune) rune {
		if isTopicChar(r) {
			return r
		}
		return '-'
	}, name)
}

func isIdentifier(s string) bool {
	for i, r := range s {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// identifierLike turns s into a valid identifier, for suggestions.
func identifierLike(s string) string {
	out := strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
	if out == "" || out[0] >= '0' && out[0] <= '9' {
		out = "_" + out
	}
	return out
}

func isPercentileLike(op string) bool {
	rest, ok := strings.CutPrefix(op, "p")
	return ok && rest != "" && (rest[0] >= '0' && rest[0] <= '9' || rest[0] == '-' || rest[0] == '.')
}

func oneOfProblem(got string, allowed ...string) string {
	if got == "" {
		return "must be set to " + strings.Join(allowed, " or ")
	}
	return fmt.Sprintf("%q is not %s", got, strings.Join(allowed, " or "))
}

// exprFieldError turns an expression compile error into a FieldError.
func exprFieldError(field string, err error) *FieldError {
	fe := &FieldError{Field: field, Problem: err.Error(), Err: err,
		Fix: "see the expression language at https://expr-lang.org/docs/language-definition"}
	var ee *ExprError
	if errors.As(err, &ee) && ee.Hint != "" {
		fe.Fix = ee.Hint
	}
	return fe
}
