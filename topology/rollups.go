package topology

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Rollup is one aggregation of a pipeline with several (Spec.Rollups).
// Every rollup reads the pipeline's one source read: the records after
// its derived fields, lookups, event time and filter.
type Rollup struct {
	// Name names the rollup: its store (default), its repartition topic
	// when it is the first with its key, and what From refers to.
	// Required, unique; letters, digits, '_' and '-'.
	Name string `yaml:"name"`

	// From makes the rollup a chained one: it reads the final results of
	// the rollup so named (defined before it) and merges them into its
	// own, coarser windows. A chained rollup has that rollup's key and
	// aggregates (it writes neither); its window is tumbling, a multiple
	// of the other's. Default "": the rollup reads the source.
	From string `yaml:"from,omitempty"`

	// Key, Window, Aggregates, Emit, Output, Store and Alerts are as in
	// the single-rollup form (Spec). Store defaults to Name.
	Key        []string    `yaml:"key,omitempty"`
	Window     Window      `yaml:"window"`
	Aggregates []Aggregate `yaml:"aggregates,omitempty"`
	Emit       string      `yaml:"emit,omitempty"`
	Output     Output      `yaml:"output"`
	Store      string      `yaml:"store,omitempty"`
	Alerts     *Alerts     `yaml:"alerts,omitempty"`
}

// MultiRollup reports whether the pipeline is written with a rollups
// list.
func (s *Spec) MultiRollup() bool { return len(s.Rollups) > 0 }

// RollupSpecs returns one Spec per rollup, in the order written: the
// pipeline's source, time, derived fields, lookups, filter, topics and
// settings, with the rollup's key, window, aggregates, emit mode, output,
// store and alerts, and RollupName, From and Repartition set. A chained
// rollup's spec has the key and aggregates of the rollup it reads. Rollups
// with the same key (fields in the same order) share a repartition topic:
// "<app>-repartition" for the first key, "<app>-<name>-repartition" for
// each other key, named after its first rollup. In the single-rollup form
// it returns []*Spec{s}. Call it on a validated spec.
func (s *Spec) RollupSpecs() []*Spec {
	if !s.MultiRollup() {
		return []*Spec{s}
	}
	out := make([]*Spec, 0, len(s.Rollups))
	byName := make(map[string]*Spec, len(s.Rollups))
	var keys [][]string
	var topics []string
	for _, r := range s.Rollups {
		c := *s
		c.Rollups = nil
		c.RollupName = r.Name
		c.Window, c.Emit, c.Output, c.Store, c.Alerts = r.Window, r.Emit, r.Output, r.Store, r.Alerts
		if c.Store == "" {
			c.Store = r.Name
		}
		if src := byName[r.From]; r.From != "" && src != nil {
			c.From = r.From
			c.Key, c.Aggregates, c.Repartition = src.Key, src.Aggregates, src.Repartition
		} else {
			c.Key, c.Aggregates = r.Key, r.Aggregates
			i := slices.IndexFunc(keys, func(k []string) bool { return slices.Equal(k, r.Key) })
			if i < 0 {
				keys = append(keys, r.Key)
				t := ""
				if len(keys) > 1 {
					t = s.App + "-" + r.Name + repartitionSuffix
				}
				topics = append(topics, t)
				i = len(keys) - 1
			}
			c.Repartition = topics[i]
		}
		out = append(out, &c)
		byName[r.Name] = &c
	}
	return out
}

// fillRollupDefaults fills each rollup's defaults as fillDefaults does for
// the single-rollup form: emit close, output.format json, store the
// rollup's name, percentile ops, and its alert rules' defaults. A
// rollup's alerts topic defaults to "<app>-<name>-alerts": every rollup
// with alerts has its own, as it has its own output topic.
func (s *Spec) fillRollupDefaults(present func(path string) bool) {
	aggs := make(map[string][]Aggregate, len(s.Rollups)) // by rollup name, inherited ones included
	for i := range s.Rollups {
		r := &s.Rollups[i]
		p := fmt.Sprintf("rollups[%d].", i)
		set := func(v *string, key, def string) {
			if *v == "" && !present(p+key) {
				*v = def
			}
		}
		set(&r.Emit, "emit", DefaultEmit)
		set(&r.Output.Format, "output.format", DefaultFormat)
		if r.Name != "" {
			set(&r.Store, "store", r.Name)
		}
		rewritePercentiles(r.Aggregates)
		own := r.Aggregates
		if r.From != "" {
			own = aggs[r.From] // nil if From names no earlier rollup: Validate says so
		}
		if _, dup := aggs[r.Name]; !dup && r.Name != "" {
			aggs[r.Name] = own
		}
		if r.Alerts == nil {
			continue
		}
		if r.Name != "" && s.App != "" {
			set(&r.Alerts.Topic, "alerts.topic", s.App+"-"+r.Name+alertsSuffix)
		}
		// The rule defaults depend on the rollup's window and aggregates
		// (a threshold rule's value, a seasonal rule's bucket).
		one := &Spec{App: s.App, Window: r.Window, Aggregates: own, Alerts: r.Alerts}
		one.fillAlertDefaults(func(path string) bool { return path == "alerts.topic" || present(p+path) })
	}
}

var rollupNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// rollupNameLike replaces what a rollup name may not contain with '_'.
func rollupNameLike(name string) string {
	out := strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
	return out
}

// singleRollupKeys are the top-level keys of the single-rollup form that
// belong to each rollup in the multi-rollup form.
var singleRollupKeys = []string{"key", "window", "aggregates", "emit", "output", "store", "alerts"}

// validateRollups checks the multi-rollup form: no single-rollup keys at
// the top level, then every rollup with the single form's checks
// (reported under "rollups[i]."), its name and store, and the rules of
// chains.
func (s *Spec) validateRollups(c *specChecker) {
	written := map[string]bool{
		"key": len(s.Key) > 0, "window": s.Window != (Window{}), "aggregates": len(s.Aggregates) > 0,
		"emit": s.Emit != "", "output": s.Output != (Output{}), "store": s.Store != "", "alerts": s.Alerts != nil,
	}
	for _, k := range singleRollupKeys {
		if written[k] {
			c.add(k, "is written at the top level, but this pipeline lists rollups, and each rollup has its own "+k,
				fmt.Sprintf("move it under the rollup it belongs to (rollups[].%s), or remove the rollups list for a pipeline of one rollup", k))
		}
	}

	first := make(map[string]int, len(s.Rollups)) // name -> index of its first rollup
	var names []string
	for i, r := range s.Rollups {
		if _, dup := first[r.Name]; !dup && r.Name != "" {
			first[r.Name] = i
			names = append(names, r.Name)
		}
	}
	specs := s.RollupSpecs()
	stores := make(map[string]int)
	rules := make(map[string]int) // alert rule name -> index of its rollup
	for i, r := range s.Rollups {
		p := fmt.Sprintf("rollups[%d].", i)
		if r.Alerts != nil {
			for j, rule := range r.Alerts.Rules {
				if k, dup := rules[rule.Name]; dup && rule.Name != "" && k != i {
					c.add(fmt.Sprintf("%salerts.rules[%d].name", p, j),
						fmt.Sprintf("%q is also the name of a rule of rollups[%d] (%q): alerts are told apart by rule name and key (in the alerts topics, in Alertmanager)", rule.Name, k, s.Rollups[k].Name),
						fmt.Sprintf("give each rule its own name, e.g. %q", r.Name+"-"+rule.Name))
				} else if !dup {
					rules[rule.Name] = i
				}
			}
		}
		switch {
		case r.Name == "":
			c.add(p+"name", "must be set: it names the rollup, its store and topics, and is what from refers to", `write e.g. "name: per_endpoint_1m"`)
		case !rollupNameRE.MatchString(r.Name):
			c.add(p+"name", fmt.Sprintf("%q may contain only letters, digits, '_' and '-': it is part of topic and store names", r.Name),
				fmt.Sprintf("write e.g. %q", rollupNameLike(r.Name)))
		case first[r.Name] != i:
			c.add(p+"name", fmt.Sprintf("%q is also the name of rollups[%d]", r.Name, first[r.Name]), "give every rollup its own name")
		}

		switch {
		case r.Store == "":
			if r.Name != "" {
				c.add(p+"store", "must not be empty: it names the rollup's window store and its changelog topic",
					"remove the key to use the rollup's name")
			}
		case r.Store == r.Name && !rollupNameRE.MatchString(r.Name):
			// The name's own error says it.
		default:
			if prob, fix := topicNameProblem(r.Store, maxTopicLen); prob != "" {
				c.add(p+"store", prob, fix)
			} else if j, dup := stores[r.Store]; dup {
				c.add(p+"store", fmt.Sprintf("%q is also the store of rollups[%d] (%q): every rollup keeps its state in a store of its own", r.Store, j, s.Rollups[j].Name),
					"write another store name, or remove the key to use the rollup's name")
			} else {
				stores[r.Store] = i
			}
		}

		chained, src := r.From != "", -1
		if chained {
			src = s.validateFrom(c, i, first, names)
		}
		if chained && len(r.Key) > 0 {
			c.add(p+"key", fmt.Sprintf("is not written for a chained rollup: it has the key of rollup %q, whose results it merges", r.From),
				"remove it; to group by other fields, read the source instead (remove from, keep key and aggregates)")
		}
		if chained && len(r.Aggregates) > 0 {
			c.add(p+"aggregates", fmt.Sprintf("are not written for a chained rollup: it merges the aggregates of rollup %q, window by window", r.From),
				"remove them; a chained rollup computes the same aggregates over its longer windows (to compute others, read the source instead: remove from)")
		}
		if src >= 0 {
			s.validateChainWindow(c, i, src)
		}

		// The checks of the single form, on the rollup's own spec.
		one := &specChecker{}
		rs := specs[i]
		if !chained {
			rs.validateKey(one)
		}
		rs.validateWindow(one)
		if !chained {
			rs.validateAggregates(one)
		}
		rs.validateEmit(one)
		rs.validateOutput(one)
		if !chained || src >= 0 {
			rs.validateAlerts(one)
		}
		for _, e := range one.errs {
			e.Field = p + e.Field
			c.errs = append(c.errs, e)
		}
	}

	if s.Source.KeyedByGroupKey {
		ref := -1
		for i, r := range s.Rollups {
			if r.From != "" || len(r.Key) == 0 {
				continue
			}
			if ref < 0 {
				ref = i
				continue
			}
			if !slices.Equal(r.Key, s.Rollups[ref].Key) {
				c.add(fmt.Sprintf("rollups[%d].key", i), fmt.Sprintf("[%s] is not the key of rollup %q ([%s]): with source.keyed_by_group_key: true, "+
					"records are keyed in Kafka by one key, so every rollup that reads the source must group by it",
					strings.Join(r.Key, ", "), s.Rollups[ref].Name, strings.Join(s.Rollups[ref].Key, ", ")),
					"group by the same fields, or set source.keyed_by_group_key: false to have eddy repartition the records by each key")
			}
		}
	}
}

// validateFrom checks the from of rollup i and returns the index of the
// rollup it reads, or -1.
func (s *Spec) validateFrom(c *specChecker, i int, first map[string]int, names []string) int {
	r := s.Rollups[i]
	f := fmt.Sprintf("rollups[%d].from", i)
	j, ok := first[r.From]
	switch {
	case r.From == r.Name:
		c.add(f, "names this rollup itself: a rollup cannot read its own results", "name a rollup written before this one, or remove from to read the source")
	case !ok:
		var before []string
		for _, n := range names {
			if first[n] < i {
				before = append(before, n)
			}
		}
		fix := "write the rollups a chained rollup reads before it"
		if len(before) > 0 {
			fix = "name one of the rollups written before this one: " + strings.Join(before, ", ")
			best, dist := "", 1<<30
			for _, n := range before {
				if d := editDistance(strings.ToLower(r.From), strings.ToLower(n)); d < dist {
					best, dist = n, d
				}
			}
			if dist <= max(1, len(r.From)/3) {
				fix = fmt.Sprintf("did you mean %q?", best)
			}
		}
		c.add(f, fmt.Sprintf("%q is not the name of a rollup of this pipeline", r.From), fix)
	case j > i:
		c.add(f, fmt.Sprintf("%q is written after this rollup: a chained rollup reads a rollup written before it", r.From),
			fmt.Sprintf("move this rollup after rollup %q", r.From))
	default:
		if t := s.Rollups[j].Window.Type; t == WindowHopping || t == WindowSession {
			c.add(f, fmt.Sprintf("rollup %q has %s windows: a chained rollup reads the results of tumbling windows, which nest in its own windows", r.From, t),
				fmt.Sprintf("give rollup %q tumbling windows, or read the source instead (remove from, and write key and aggregates)", r.From))
			return -1
		}
		return j
	}
	return -1
}

// validateChainWindow checks the window of chained rollup i, which reads
// rollup src: tumbling, a multiple of src's size (so that src's windows
// nest in it), and no grace.
func (s *Spec) validateChainWindow(c *specChecker, i, src int) {
	r, from := s.Rollups[i], s.Rollups[src]
	p := fmt.Sprintf("rollups[%d].window.", i)
	w, fw := r.Window, from.Window
	switch {
	case w.Type == WindowHopping || w.Type == WindowSession:
		c.add(p+"type", fmt.Sprintf("must be tumbling for a chained rollup, not %s: each of its windows is made of whole windows of rollup %q", w.Type, r.From),
			`write "type: tumbling", with a size that is a multiple of `+fmtDuration(fw.Size))
	case w.Type == WindowTumbling && fw.Type == WindowTumbling && w.Size > 0 && fw.Size > 0 && w.Size%fw.Size != 0:
		next := (w.Size + fw.Size - 1) / fw.Size * fw.Size
		c.add(p+"size", fmt.Sprintf("(%s) must be a multiple of the window size of rollup %q (%s), so that each of its windows lies in exactly one window of this rollup",
			fmtDuration(w.Size), r.From, fmtDuration(fw.Size)), fmt.Sprintf("write e.g. %q", "size: "+fmtDuration(next)))
	}
	if w.Grace > 0 {
		c.add(p+"grace", fmt.Sprintf("must be 0s for a chained rollup, not %s: its time is the time through which rollup %q has closed its windows, "+
			"so every result it receives is final and on time, and nothing it receives is ever late", fmtDuration(w.Grace), r.From),
			fmt.Sprintf("remove it; to wait longer for late records, give rollup %q (or the rollup that reads the source) more grace", r.From))
	}
}

// rootOf returns the index of the rollup that reads the source at the
// start of rollup i's chain (i itself when it reads the source), or -1
// when a from names no earlier rollup.
func (s *Spec) rootOf(i int) int {
	for steps := 0; steps <= len(s.Rollups); steps++ {
		from := s.Rollups[i].From
		if from == "" {
			return i
		}
		j := slices.IndexFunc(s.Rollups[:i], func(r Rollup) bool { return r.Name == from })
		if j < 0 {
			return -1
		}
		i = j
	}
	return -1
}

// windowOf returns the window of the rollup named name (the zero Window
// if there is none).
func (s *Spec) windowOf(name string) Window {
	for _, r := range s.Rollups {
		if r.Name == name {
			return r.Window
		}
	}
	return Window{}
}
