package processor

// Publishing alert transitions: the engine (processor/engine) decides and
// renders them; the shell encodes them, writes them to the alerts topic and
// hands them to the Alertmanager forwarder.

import (
	"context"
	"encoding/json"
	"time"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/topology"
)

// Alert is one published alert transition: the alerts topic's record
// (JSON, or Avro with AlertSchema) and what goes to Alertmanager.
type Alert = engine.Alert

// AlertSubject is the registry subject of a pipeline's Avro alerts.
func AlertSubject(spec *topology.Spec) string { return spec.AlertsTopic() + "-value" }

// AlertSchema is the Avro schema of alert records.
const AlertSchema = `{
  "type": "record", "name": "Alert", "namespace": "eddy.alerts",
  "doc": "One alert transition published by eddy (docs/alerting.md)",
  "fields": [
    {"name": "rule", "type": "string"},
    {"name": "rule_kind", "type": "string"},
    {"name": "state", "type": "string", "doc": "firing or resolved"},
    {"name": "severity", "type": "string"},
    {"name": "key", "type": {"type": "map", "values": "string"}},
    {"name": "labels", "type": {"type": "map", "values": "string"}},
    {"name": "value", "type": ["null", "double"], "default": null},
    {"name": "threshold", "type": ["null", "double"], "default": null},
    {"name": "baseline", "type": ["null", "double"], "default": null},
    {"name": "stddev", "type": ["null", "double"], "default": null},
    {"name": "window_start", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
    {"name": "window_end", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
    {"name": "started_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "summary", "type": "string"},
    {"name": "runbook_url", "type": ["null", "string"], "default": null}
  ]
}`

// encode renders an alert as the alerts topic's value.
func (p *pipeline) encodeAlert(a Alert) ([]byte, error) {
	if p.alertEnc == nil {
		return json.Marshal(a)
	}
	m := map[string]any{
		"rule": a.Rule, "rule_kind": a.RuleKind, "state": a.State, "severity": a.Severity,
		"key": a.Key, "labels": a.Labels, "summary": a.Summary,
		"value": nilOr(a.Value), "threshold": nilOr(a.Threshold), "baseline": nilOr(a.Baseline), "stddev": nilOr(a.StdDev),
		"window_start": nil, "window_end": nil, "runbook_url": nilOr(a.RunbookURL),
	}
	ms := func(v int64) time.Time { return time.UnixMilli(v).UTC() }
	if a.WindowStart != nil {
		m["window_start"], m["window_end"] = ms(a.WindowStartMs), ms(a.WindowEndMs)
	}
	m["started_at"], m["at"] = ms(a.StartedAtMs), ms(a.AtMs)
	return p.alertEnc.Encode(m)
}

// publishAlert writes one alert transition to the alerts topic (keyed by
// the grouping key, timestamped with the transition's stream time) and
// hands it to the Alertmanager forwarder, if any.
func (a *App) publishAlert(ctx context.Context, t *task, tr engine.AlertTransition) {
	al := tr.Alert
	a.m.alerts.WithLabelValues(al.Rule, al.State).Inc()
	out, err := t.r.p.alertRecord(tr)
	if err != nil {
		a.setProduceErr(err)
		return
	}
	a.log.Info("alert", "rule", al.Rule, "state", al.State, "key", tr.Key, "at", al.At, "summary", al.Summary)
	a.produce(out)
	if a.am != nil {
		a.am.send(taskKey{t.r.stage.idx, t.partition}.owner(), al, true)
	}
}

func nilOr[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
