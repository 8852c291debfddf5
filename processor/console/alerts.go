package console

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Alerts (GET /api/v1/alerts): the alert transitions of the alerts topic
// written since `from` (default the last 24 hours), paired into episodes:
// one per firing, with its resolution when there is one. Firing lists the
// episodes not resolved yet. Each carries the key's fields in the
// pipeline's key order and the aggregate the rule is about, so the page
// links it to the key's chart.

const defaultAlertRange = 24 * time.Hour

// Episode is one alert, from firing to resolved (or still firing).
type Episode struct {
	Rule     string `json:"rule"`
	Kind     string `json:"kind"`
	Severity string `json:"severity"`
	// Key is the grouping key's values in the pipeline's key order.
	Key []string `json:"key"`
	// Aggregate is the value the rule watches (its `value`, else the
	// first aggregate), for the chart link.
	Aggregate   string   `json:"aggregate"`
	Summary     string   `json:"summary"`
	Value       *float64 `json:"value"`
	Threshold   *float64 `json:"threshold"`
	StartedAt   string   `json:"started_at"`
	ResolvedAt  string   `json:"resolved_at,omitempty"`
	DurationMs  int64    `json:"duration_ms"` // to the resolution, or to the last transition's time while firing
	Firing      bool     `json:"firing"`
	RunbookURL  string   `json:"runbook_url,omitempty"`
	WindowStart string   `json:"window_start,omitempty"`
}

// In a pipeline with several rollups, the rollup parameter names the
// rollup whose alerts topic is read (default the first); each rollup has
// its own ("<app>-<rollup>-alerts" by default).

// AlertsJSON is the answer of GET /api/v1/alerts.
type AlertsJSON struct {
	// Rollup is the rollup read, in a pipeline with several.
	Rollup    string    `json:"rollup,omitempty"`
	Topic     string    `json:"topic"`
	FromMs    int64     `json:"from_ms"`
	Firing    []Episode `json:"firing"`
	History   []Episode `json:"history"` // every episode, newest first
	Scanned   int       `json:"scanned"`
	Truncated bool      `json:"truncated"`
}

func (c *Console) handleAlerts(w http.ResponseWriter, r *http.Request) {
	s, ok := c.rollupParam(w, r)
	if !ok {
		return
	}
	if s.Alerts == nil || len(s.Alerts.Rules) == 0 {
		writeJSON(w, http.StatusOK, AlertsJSON{Rollup: s.RollupName, Firing: []Episode{}, History: []Episode{}})
		return
	}
	from := c.cfg.Now().Add(-defaultAlertRange)
	if v := r.URL.Query().Get("from"); v != "" {
		t, ok := parseTime(v)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "from: not an RFC 3339 time or milliseconds since the epoch: " + strconv.Quote(v)})
			return
		}
		from = t
	}
	ctx, cancel := context.WithTimeout(r.Context(), resultsTimeout)
	defer cancel()
	res := AlertsJSON{Rollup: s.RollupName, Topic: s.AlertsTopic(), FromMs: from.UnixMilli(), Firing: []Episode{}, History: []Episode{}}
	aggOf := map[string]string{}
	for _, rule := range s.Alerts.Rules {
		aggOf[rule.Name] = rule.Value
		if rule.Value == "" && len(s.Aggregates) > 0 {
			aggOf[rule.Name] = s.Aggregates[0].Name
		}
	}
	open := map[string]*Episode{} // rule + key -> its open episode
	var all []*Episode
	var err error
	res.Scanned, res.Truncated, err = c.scanTopic(ctx, s.AlertsTopic(), from, func(rec *kgo.Record) {
		d := c.decodeRecord(ctx, rec)
		if d.Value == nil {
			return
		}
		str := func(k string) string { v, _ := d.Value[k].(string); return v }
		num := func(k string) *float64 {
			if v, ok := d.Value[k].(float64); ok {
				return &v
			}
			return nil
		}
		keyObj, _ := d.Value["key"].(map[string]any)
		var key []string
		for _, f := range s.Key {
			key = append(key, text(keyObj[f]))
		}
		kb, _ := json.Marshal(key)
		id := str("rule") + string(kb)
		at := str("at")
		switch str("state") {
		case "firing":
			if ep := open[id]; ep != nil { // still firing: a newer transition of the same episode
				ep.Value, ep.Summary = num("value"), str("summary")
				ep.DurationMs = msBetween(ep.StartedAt, at)
				return
			}
			ep := &Episode{Rule: str("rule"), Kind: str("rule_kind"), Severity: str("severity"), Key: key, Aggregate: aggOf[str("rule")],
				Summary: str("summary"), Value: num("value"), Threshold: num("threshold"), StartedAt: str("started_at"), Firing: true,
				RunbookURL: str("runbook_url"), WindowStart: str("window_start")}
			if ep.StartedAt == "" {
				ep.StartedAt = at
			}
			ep.DurationMs = msBetween(ep.StartedAt, at)
			open[id] = ep
			all = append(all, ep)
		case "resolved":
			ep := open[id]
			if ep == nil { // fired before the range
				ep = &Episode{Rule: str("rule"), Kind: str("rule_kind"), Severity: str("severity"), Key: key, Aggregate: aggOf[str("rule")],
					StartedAt: str("started_at"), RunbookURL: str("runbook_url")}
				all = append(all, ep)
			}
			delete(open, id)
			ep.Firing, ep.ResolvedAt = false, at
			ep.Summary = str("summary")
			ep.DurationMs = msBetween(ep.StartedAt, at)
		}
	})
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Error: "read " + s.AlertsTopic() + ": " + err.Error()})
		return
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].StartedAt > all[j].StartedAt })
	for _, ep := range all {
		res.History = append(res.History, *ep)
		if ep.Firing {
			res.Firing = append(res.Firing, *ep)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func msBetween(a, b string) int64 {
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	if err1 != nil || err2 != nil {
		return 0
	}
	return tb.Sub(ta).Milliseconds()
}
