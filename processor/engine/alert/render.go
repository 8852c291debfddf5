package alert

// Rendering a transition: the Alert value the shell encodes (JSON or Avro)
// and sends to Alertmanager, with its summary text.

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/processor/engine/groupkey"
	"github.com/eddy-streams/eddy/topology"
)

// Alert is one published alert transition: the alerts topic's record
// (JSON, or Avro with AlertSchema) and what goes to Alertmanager.
type Alert struct {
	Rule        string            `json:"rule"`
	RuleKind    string            `json:"rule_kind"`
	State       string            `json:"state"`
	Severity    string            `json:"severity"`
	Key         map[string]string `json:"key"`
	Labels      map[string]string `json:"labels"`
	Value       *float64          `json:"value"`
	Threshold   *float64          `json:"threshold"`
	Baseline    *float64          `json:"baseline"`
	StdDev      *float64          `json:"stddev"`
	WindowStart *string           `json:"window_start"`
	WindowEnd   *string           `json:"window_end"`
	StartedAt   string            `json:"started_at"`
	At          string            `json:"at"`
	Summary     string            `json:"summary"`
	RunbookURL  *string           `json:"runbook_url"`

	// The same instants as milliseconds since the epoch, for encoders and
	// Alertmanager, so nothing parses the text back. Not in the JSON
	// record. WindowStartMs and WindowEndMs are set when WindowStart is.
	StartedAtMs, AtMs          int64 `json:"-"`
	WindowStartMs, WindowEndMs int64 `json:"-"`
}

// alert renders a transition.
func (e *alertEngine) alert(ev alertEvent) Alert {
	r := ev.rule
	a := Alert{
		Rule: r.spec.Name, RuleKind: r.spec.Kind, State: ev.state, Severity: r.spec.Severity,
		Key: make(map[string]string, len(e.spec.Key)), Labels: make(map[string]string, len(r.spec.Labels)),
		Value: ev.value, Threshold: r.threshold, Baseline: ev.baseline, StdDev: ev.stddev,
		StartedAt: fmtTime(ev.startedAt), At: fmtTime(ev.at), StartedAtMs: ev.startedAt, AtMs: ev.at,
	}
	parts, _ := groupkey.Parts(ev.key)
	for i, f := range e.spec.Key {
		if i < len(parts) {
			a.Key[f] = parts[i]
		}
	}
	for k, v := range r.spec.Labels {
		a.Labels[k] = v
	}
	if ev.window != nil {
		s, en := fmtTime(ev.window.Start), fmtTime(ev.window.End)
		a.WindowStart, a.WindowEnd = &s, &en
		a.WindowStartMs, a.WindowEndMs = ev.window.Start, ev.window.End
	}
	if r.spec.RunbookURL != "" {
		u := r.spec.RunbookURL
		a.RunbookURL = &u
	}
	a.Summary = e.summary(ev, &a)
	return a
}

func (e *alertEngine) summary(ev alertEvent, a *Alert) string {
	r := ev.rule
	if r.tmpl != nil {
		data := map[string]any{
			"rule": a.Rule, "state": a.State, "severity": a.Severity, "started_at": a.StartedAt, "at": a.At,
			"value": nilOr(a.Value), "threshold": nilOr(a.Threshold), "baseline": nilOr(a.Baseline), "stddev": nilOr(a.StdDev),
			"window_start": nilOr(a.WindowStart), "window_end": nilOr(a.WindowEnd), "key": a.Key,
			"reason": ev.note,
		}
		for k, v := range a.Key {
			data[k] = v
		}
		if ev.row != nil {
			for i, ag := range e.spec.Aggregates {
				if v, ok := ev.row.Value(i); ok {
					data[ag.Name] = v
				} else {
					data[ag.Name] = nil
				}
			}
		}
		var b bytes.Buffer
		if err := r.tmpl.Execute(&b, data); err == nil {
			return b.String()
		} else {
			return fmt.Sprintf("%s %s for %s (summary template failed: %v)", a.Rule, a.State, keyText(e.spec, a.Key), err)
		}
	}
	s := fmt.Sprintf("%s %s for %s", a.Rule, a.State, keyText(e.spec, a.Key))
	if ev.note != "" {
		s += ": " + ev.note
	}
	if a.Value != nil && r.spec.Kind == topology.AlertThreshold {
		s += fmt.Sprintf(" (%s=%s)", r.spec.Value, fmtNum(*a.Value))
	}
	return s
}

func nilOr[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func keyText(spec *topology.Spec, key map[string]string) string {
	parts := make([]string, 0, len(spec.Key))
	for _, f := range spec.Key {
		parts = append(parts, f+"="+key[f])
	}
	return strings.Join(parts, " ")
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func fmtDur(ms int64) string { return time.Duration(ms * int64(time.Millisecond)).String() }

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatTime renders ms as eddy writes times in headers and alerts.
func FormatTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(timeLayout) }

// TimeLayout is the layout of FormatTime.
const TimeLayout = timeLayout

func fmtTime(ms int64) string { return FormatTime(ms) }
