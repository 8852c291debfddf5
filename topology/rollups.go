package topology

import "slices"

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
