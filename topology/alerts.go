package topology

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"
)

// Alerts are rules evaluated on the pipeline's window results and record
// arrivals. Each rule keeps per-key state (inactive, pending, firing,
// resolved) in the pipeline's store, so alerts survive restarts and
// replays; every firing and resolved transition is published once to the
// alerts topic.
type Alerts struct {
	// Topic receives one record per alert transition. Default
	// "<app>-alerts". Its format is output.format (JSON, or Avro with the
	// schema in docs/alerting.md registered under "<topic>-value").
	Topic string `yaml:"topic,omitempty"`

	// Renotify publishes a firing alert again when it has been firing this
	// long (stream time) since it was last published. Default 0: never
	// (Alertmanager repeats notifications itself).
	Renotify time.Duration `yaml:"renotify,omitempty"`

	// Rules are the alert rules. Required, at least one, names unique.
	Rules []AlertRule `yaml:"rules"`
}

// Alert rule kinds.
const (
	AlertThreshold = "threshold"
	AlertAbsence   = "absence"
	AlertDeviation = "deviation"
)

// Deviation baselines.
const (
	BaselineEWMA     = "ewma"
	BaselineSeasonal = "seasonal"
)

// Deviation directions.
const (
	DirectionAbove = "above"
	DirectionBelow = "below"
	DirectionBoth  = "both"
)

// Alert rule defaults.
const (
	DefaultSeverity       = "warning"
	DefaultAlpha          = 0.1
	DefaultStdDevs        = 3
	DefaultMinHistoryEWMA = 20
	DefaultMinHistoryDays = 3
	DefaultPeriod         = 24 * time.Hour
	DefaultForgetAfter    = 24 * time.Hour
)

// AlertRule is one alert rule.
type AlertRule struct {
	// Name identifies the rule (Alertmanager's alertname). Required,
	// unique; letters, digits, '.', '_' and '-'. Renaming a rule starts
	// its state afresh.
	Name string `yaml:"name"`
	// Kind is "threshold", "absence" or "deviation". Required.
	Kind string `yaml:"kind"`
	// Severity is copied to every alert (and its Alertmanager labels).
	// Default "warning".
	Severity string `yaml:"severity,omitempty"`
	// Labels are extra labels copied to every alert (team, service...).
	Labels map[string]string `yaml:"labels,omitempty"`
	// Summary is a Go text/template rendered for each alert, e.g.
	// `p99 of {{.endpoint}} is {{printf "%.0f" .value}} ms`. It sees the
	// key fields, the aggregates, and rule, state, severity, value,
	// threshold, baseline, stddev, window_start, window_end, started_at.
	// Default: a sentence eddy writes from the rule.
	Summary string `yaml:"summary,omitempty"`
	// RunbookURL is copied to every alert.
	RunbookURL string `yaml:"runbook_url,omitempty"`

	// Condition (threshold) is a boolean expression over a window's
	// aggregates and key fields, e.g. `p99_latency_ms > 500 && requests > 50`.
	Condition string `yaml:"condition,omitempty"`
	// Value (threshold, deviation) names the aggregate an alert reports as
	// its value; deviation compares it with the baseline. Threshold
	// default: the first aggregate the condition names.
	Value string `yaml:"value,omitempty"`
	// ValueDefaulted records that Value was not written in the spec but
	// taken from the condition, so describe can say so: a guard such as
	// `requests >= 20 && p99_latency_ms > 1000` would otherwise report
	// the request count.
	ValueDefaulted bool `yaml:"-"`
	// ForWindows (threshold, deviation): the condition must hold in this
	// many consecutive windows of a key before the alert fires. Default 1.
	ForWindows int `yaml:"for_windows,omitempty"`
	// ResolveWindows (threshold, deviation): a firing alert resolves after
	// the condition has been false in this many consecutive windows; a
	// window in which the key had no records counts as false. Default 1.
	ResolveWindows int `yaml:"resolve_windows,omitempty"`

	// For (absence) is how long a key must receive nothing (stream time)
	// before the alert fires. Required for absence.
	For time.Duration `yaml:"for,omitempty"`
	// ForgetAfter (absence, deviation) is how long after its last record
	// (absence) or window (deviation) a key is forgotten: its state,
	// baseline included, is deleted (a firing alert resolves), so state
	// stays bounded. Default 24h (absence: at least twice for; seasonal
	// deviation: at least twice period); for absence it must be longer
	// than for.
	ForgetAfter time.Duration `yaml:"forget_after,omitempty"`

	// Baseline (deviation) is "ewma" (recent history: exponentially
	// weighted mean and variance of the key's windows, the default) or
	// "seasonal" (the same time of day on previous periods).
	Baseline string `yaml:"baseline,omitempty"`
	// Alpha (deviation) is the weight of the newest value in the moving
	// averages, in (0, 1]. Default 0.1.
	Alpha float64 `yaml:"alpha,omitempty"`
	// StdDevs (deviation) is how many standard deviations from the
	// baseline a value must be to count as abnormal. Default 3.
	StdDevs float64 `yaml:"stddevs,omitempty"`
	// MinDelta (deviation) is the smallest absolute difference from the
	// baseline that counts as abnormal, so a flat history (standard
	// deviation near 0) does not fire on tiny changes. Default 0.
	MinDelta float64 `yaml:"min_delta,omitempty"`
	// Direction (deviation) is "above" (default), "below" or "both".
	Direction string `yaml:"direction,omitempty"`
	// MinHistory (deviation) arms the rule only after this much history:
	// windows for ewma (default 20), previous periods for seasonal
	// (default 3).
	MinHistory int `yaml:"min_history,omitempty"`
	// Period (seasonal) is the length of the cycle. Default 24h.
	Period time.Duration `yaml:"period,omitempty"`
	// Bucket (seasonal) is the slot of the period a window is compared
	// in: windows starting in the same bucket of the period share a
	// baseline. Default the window size (advance for hopping windows);
	// must divide period.
	Bucket time.Duration `yaml:"bucket,omitempty"`
}

// AlertsTopic returns the alerts topic, or "" if the spec has no alerts.
func (s *Spec) AlertsTopic() string {
	if s.Alerts == nil {
		return ""
	}
	return s.Alerts.Topic
}

func (s *Spec) fillAlertDefaults(present func(string) bool) {
	a := s.Alerts
	if a == nil {
		return
	}
	if a.Topic == "" && !present("alerts.topic") && s.App != "" {
		a.Topic = s.App + alertsSuffix
	}
	for i := range a.Rules {
		r := &a.Rules[i]
		p := fmt.Sprintf("alerts.rules[%d].", i)
		if r.Severity == "" && !present(p+"severity") {
			r.Severity = DefaultSeverity
		}
		switch r.Kind {
		case AlertThreshold, AlertDeviation:
			if r.ForWindows == 0 && !present(p+"for_windows") {
				r.ForWindows = 1
			}
			if r.ResolveWindows == 0 && !present(p+"resolve_windows") {
				r.ResolveWindows = 1
			}
		case AlertAbsence:
			if r.ForgetAfter == 0 && !present(p+"forget_after") {
				r.ForgetAfter = max(DefaultForgetAfter, 2*r.For)
			}
		}
		if r.Kind == AlertThreshold && r.Value == "" && !present(p+"value") {
			r.Value = s.firstAggregateIn(r.Condition)
			r.ValueDefaulted = true
		}
		if r.Kind != AlertDeviation {
			continue
		}
		if r.Baseline == "" && !present(p+"baseline") {
			r.Baseline = BaselineEWMA
		}
		if r.Alpha == 0 && !present(p+"alpha") {
			r.Alpha = DefaultAlpha
		}
		if r.StdDevs == 0 && !present(p+"stddevs") {
			r.StdDevs = DefaultStdDevs
		}
		if r.Direction == "" && !present(p+"direction") {
			r.Direction = DirectionAbove
		}
		if r.ForgetAfter == 0 && !present(p+"forget_after") && r.Baseline != BaselineSeasonal {
			r.ForgetAfter = DefaultForgetAfter
		}
		if r.MinHistory == 0 && !present(p+"min_history") {
			r.MinHistory = DefaultMinHistoryEWMA
			if r.Baseline == BaselineSeasonal {
				r.MinHistory = DefaultMinHistoryDays
			}
		}
		if r.Baseline == BaselineSeasonal {
			if r.Period == 0 && !present(p+"period") {
				r.Period = DefaultPeriod
			}
			if r.ForgetAfter == 0 && !present(p+"forget_after") {
				r.ForgetAfter = max(DefaultForgetAfter, 2*r.Period)
			}
			if r.Bucket == 0 && !present(p+"bucket") {
				r.Bucket = s.Window.Size
				if s.Window.Type == WindowHopping {
					r.Bucket = s.Window.Advance
				}
			}
		}
	}
}

var identRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// firstAggregateIn returns the first aggregate named in expression src, or "".
func (s *Spec) firstAggregateIn(src string) string {
	for _, id := range identRE.FindAllString(src, -1) {
		for _, a := range s.Aggregates {
			if a.Name == id {
				return id
			}
		}
	}
	return ""
}

// AlertFields are the fields an alert rule's condition may name: every
// aggregate (a float, or nil when the window had no value for it) and every
// key field (a string).
func (s *Spec) AlertFields() map[string]FieldType {
	f := make(map[string]FieldType, len(s.Aggregates)+len(s.Key))
	for _, k := range s.Key {
		f[k] = FieldString
	}
	for _, a := range s.Aggregates {
		if a.Op == AggTopK {
			continue // a list, not a number: alert rules cannot use it
		}
		f[a.Name] = FieldFloat
	}
	return f
}

// ParseSummary parses a rule's summary template (nil if it has none).
func (r *AlertRule) ParseSummary() (*template.Template, error) {
	if r.Summary == "" {
		return nil, nil
	}
	return template.New(r.Name).Option("missingkey=zero").Parse(r.Summary)
}

var ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func (s *Spec) validateAlerts(c *specChecker) {
	a := s.Alerts
	if a == nil {
		return
	}
	if len(a.Rules) == 0 {
		c.add("alerts.rules", "must list at least one rule", "add a rule, or remove the alerts section")
	}
	if a.Renotify < 0 {
		c.add("alerts.renotify", fmt.Sprintf("must not be negative, not %s", fmtDuration(a.Renotify)), `write e.g. "renotify: 1h", or remove it`)
	}
	names := make(map[string]int)
	aggs := make(map[string]bool)
	for _, ag := range s.Aggregates {
		aggs[ag.Name] = ag.Op != AggTopK
	}
	aggList := make([]string, 0, len(s.Aggregates))
	for _, ag := range s.Aggregates {
		aggList = append(aggList, ag.Name)
	}
	for i, r := range a.Rules {
		p := fmt.Sprintf("alerts.rules[%d].", i)
		switch {
		case r.Name == "":
			c.add(p+"name", "must be set: it names the alert", `write e.g. "name: high-latency"`)
		case !ruleNameRE.MatchString(r.Name):
			c.add(p+"name", fmt.Sprintf("%q may contain only letters, digits, '.', '_' and '-'", r.Name), "rename the rule")
		default:
			if first, dup := names[r.Name]; dup {
				c.add(p+"name", fmt.Sprintf("%q is also the name of alerts.rules[%d]", r.Name, first), "give every rule its own name")
			}
			names[r.Name] = i
		}
		if strings.TrimSpace(r.Severity) == "" {
			c.add(p+"severity", "must not be empty", `remove it for "warning", or write e.g. "severity: critical"`)
		}
		for k := range r.Labels {
			if !promLabelRE.MatchString(k) {
				c.add(p+"labels", fmt.Sprintf("label name %q is not a valid label name (letters, digits and '_', not starting with a digit)", k), "rename the label")
			}
		}
		if _, err := r.ParseSummary(); err != nil {
			c.add(p+"summary", "is not a valid template: "+err.Error(), `write e.g. "summary: 'p99 of {{.endpoint}} is {{printf \"%.0f\" .value}} ms'"`)
		}
		notFor := func(field string, set bool, fix string) {
			if set {
				c.add(p+field, "is not used by "+r.Kind+" rules", fix)
			}
		}
		windowed := func() {
			if r.ForWindows < 1 {
				c.add(p+"for_windows", fmt.Sprintf("must be at least 1, not %d", r.ForWindows), "remove it to fire on the first window that matches")
			}
			if r.ResolveWindows < 1 {
				c.add(p+"resolve_windows", fmt.Sprintf("must be at least 1, not %d", r.ResolveWindows), "remove it to resolve on the first window that does not match")
			}
			if r.Value != "" && !aggs[r.Value] {
				c.add(p+"value", fmt.Sprintf("%q is not an aggregate of this pipeline", r.Value), "name one of: "+strings.Join(aggList, ", "))
			}
		}
		deviationOnly := r.Baseline != "" || r.Alpha != 0 || r.StdDevs != 0 || r.MinDelta != 0 || r.Direction != "" ||
			r.MinHistory != 0 || r.Period != 0 || r.Bucket != 0
		switch r.Kind {
		case AlertThreshold:
			if r.Condition == "" {
				c.add(p+"condition", "must be set for a threshold rule", `write e.g. "condition: p99_latency_ms > 500 && requests > 50"`)
			} else if _, err := CompileBool(r.Condition, s.AlertFields()); err != nil {
				fe := exprFieldError(p+"condition", err)
				if strings.Contains(err.Error(), "unknown name") {
					fe.Fix = "a condition may name the aggregates (" + strings.Join(aggList, ", ") + ") and the key fields (" + strings.Join(s.Key, ", ") + ")"
				}
				c.errs = append(c.errs, fe)
			}
			windowed()
			notFor("for", r.For != 0, `remove it; threshold rules count windows: write "for_windows: N"`)
			notFor("forget_after", r.ForgetAfter != 0, "remove it")
			notFor("baseline", deviationOnly, "remove the deviation settings (baseline, alpha, stddevs, min_delta, direction, min_history, period, bucket), or write \"kind: deviation\"")
		case AlertAbsence:
			if r.For <= 0 {
				c.add(p+"for", "must be set to a positive duration for an absence rule: how long a key may receive nothing", `write e.g. "for: 2m"`)
			}
			if r.ForgetAfter <= r.For {
				c.add(p+"forget_after", fmt.Sprintf("(%s) must be longer than for (%s)", fmtDuration(r.ForgetAfter), fmtDuration(r.For)), "remove it for the default (24h), or make it longer")
			}
			notFor("condition", r.Condition != "", "remove it: an absence rule fires when a key receives no records")
			notFor("value", r.Value != "", "remove it")
			notFor("for_windows", r.ForWindows != 0, `remove it; absence rules use "for: <duration>"`)
			notFor("resolve_windows", r.ResolveWindows != 0, "remove it: an absence alert resolves when the key's records return")
			notFor("baseline", deviationOnly, "remove the deviation settings")
		case AlertDeviation:
			if r.Value == "" {
				c.add(p+"value", "must name the aggregate to compare with its baseline", "write e.g. \"value: "+firstOr(aggList, "requests")+"\"")
			}
			windowed()
			notFor("condition", r.Condition != "", `remove it, or write "kind: threshold"`)
			notFor("for", r.For != 0, `remove it; deviation rules count windows: write "for_windows: N"`)
			if r.ForgetAfter <= 0 {
				c.add(p+"forget_after", fmt.Sprintf("must be positive, not %s", fmtDuration(r.ForgetAfter)), "remove it for the default")
			}
			switch r.Baseline {
			case BaselineEWMA:
				notFor("period", r.Period != 0, `remove it, or write "baseline: seasonal"`)
				notFor("bucket", r.Bucket != 0, `remove it, or write "baseline: seasonal"`)
			case BaselineSeasonal:
				if r.Period <= 0 {
					c.add(p+"period", fmt.Sprintf("must be positive, not %s", fmtDuration(r.Period)), `remove it for "24h"`)
				}
				if r.Bucket <= 0 {
					c.add(p+"bucket", fmt.Sprintf("must be positive, not %s", fmtDuration(r.Bucket)), "remove it for the window size")
				} else if r.Period > 0 && r.Period%r.Bucket != 0 {
					c.add(p+"bucket", fmt.Sprintf("(%s) must divide period (%s) evenly", fmtDuration(r.Bucket), fmtDuration(r.Period)), `write e.g. "bucket: 10m"`)
				}
			default:
				c.add(p+"baseline", oneOfProblem(r.Baseline, BaselineEWMA, BaselineSeasonal),
					`write "baseline: ewma" (recent history, the default) or "baseline: seasonal" (the same time on previous days)`)
			}
			if r.Alpha <= 0 || r.Alpha > 1 {
				c.add(p+"alpha", fmt.Sprintf("must be in (0, 1], not %g", r.Alpha), "remove it for 0.1")
			}
			if r.StdDevs <= 0 {
				c.add(p+"stddevs", fmt.Sprintf("must be positive, not %g", r.StdDevs), "remove it for 3")
			}
			if r.MinDelta < 0 {
				c.add(p+"min_delta", fmt.Sprintf("must not be negative, not %g", r.MinDelta), "remove it")
			}
			if r.MinHistory < 1 {
				c.add(p+"min_history", fmt.Sprintf("must be at least 1, not %d", r.MinHistory), "remove it for the default")
			}
			switch r.Direction {
			case DirectionAbove, DirectionBelow, DirectionBoth:
			default:
				c.add(p+"direction", oneOfProblem(r.Direction, DirectionAbove, DirectionBelow, DirectionBoth), `write "direction: above" (the default)`)
			}
		default:
			c.add(p+"kind", oneOfProblem(r.Kind, AlertThreshold, AlertAbsence, AlertDeviation),
				`write "kind: threshold" (a condition over a window), "kind: absence" (no records for a while) or "kind: deviation" (far from a learned baseline)`)
		}
	}
}

var promLabelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}
