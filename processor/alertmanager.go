package processor

// Forwarding alerts to Prometheus Alertmanager (its v2 API,
// POST /api/v2/alerts), so routing, silences, grouping and notification
// channels come from the tool operators already run.
//
// Alertmanager expects a client to re-send active alerts: an alert whose
// endsAt passes without news is resolved. The forwarder therefore keeps
// the firing alerts of the partitions this worker owns and re-posts them
// every resend interval with endsAt a few intervals ahead. A worker that
// dies stops re-sending, and the partition's new owner re-sends the firing
// alerts it restored from the changelog. Resolved transitions are posted
// with endsAt at the resolution.
//
// Posting happens when a transition is published (before its commit): a
// transition that is re-done after a crash or an aborted transaction is
// posted again with the same labels, which Alertmanager treats as the same
// alert. Transitions of replayed history (firing older than MaxAge) are not
// posted, so a replay does not page anyone.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// amAlert is one alert in Alertmanager's v2 API.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

type amForwarder struct {
	url    string
	app    string
	client *http.Client
	log    *slog.Logger
	m      *metrics
	resend time.Duration
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	active  map[string]amEntry // fingerprint -> firing alert
	pending []amAlert
	wake    chan struct{}
}

type amEntry struct {
	alert     amAlert
	partition int32
}

func newAMForwarder(url, app string, log *slog.Logger, m *metrics, resend, maxAge time.Duration) *amForwarder {
	return &amForwarder{
		url:    strings.TrimRight(url, "/") + "/api/v2/alerts",
		app:    app,
		client: &http.Client{Timeout: 10 * time.Second},
		log:    log,
		m:      m,
		resend: resend,
		maxAge: maxAge,
		now:    time.Now,
		active: make(map[string]amEntry),
		wake:   make(chan struct{}, 1),
	}
}

// labelName turns a key field name into a valid Prometheus label name.
func labelName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func (f *amForwarder) convert(a Alert) (amAlert, string) {
	labels := map[string]string{"alertname": a.Rule, "severity": a.Severity, "eddy_app": f.app}
	for k, v := range a.Key {
		labels[labelName(k)] = v
	}
	for k, v := range a.Labels {
		labels[k] = v
	}
	ann := map[string]string{"summary": a.Summary, "rule_kind": a.RuleKind}
	if a.RunbookURL != nil {
		ann["runbook_url"] = *a.RunbookURL
	}
	if a.Value != nil {
		ann["value"] = strconv.FormatFloat(*a.Value, 'g', 6, 64)
	}
	started := time.UnixMilli(a.StartedAtMs).UTC()
	out := amAlert{Labels: labels, Annotations: ann, StartsAt: started}
	keys := slices.Sorted(maps.Keys(labels))
	var fp strings.Builder
	for _, k := range keys {
		fp.WriteString(k + "\x00" + labels[k] + "\x00")
	}
	return out, fp.String()
}

// send queues one transition of a partition's alert. checkAge skips
// transitions older than maxAge (replayed history); alerts restored as
// firing are always sent.
func (f *amForwarder) send(partition int32, a Alert, checkAge bool) {
	am, fp := f.convert(a)
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if a.State == "firing" {
		at := time.UnixMilli(a.AtMs).UTC()
		if checkAge && f.maxAge > 0 && now.Sub(at) > f.maxAge {
			return // replayed history
		}
		am.EndsAt = now.Add(4 * f.resend)
		f.active[fp] = amEntry{alert: am, partition: partition}
	} else {
		if _, ok := f.active[fp]; !ok {
			at := time.UnixMilli(a.AtMs).UTC()
			if checkAge && f.maxAge > 0 && now.Sub(at) > f.maxAge {
				return
			}
		}
		delete(f.active, fp)
		at := time.UnixMilli(a.AtMs).UTC()
		am.EndsAt = at
		if am.EndsAt.After(now) || am.EndsAt.Before(am.StartsAt) {
			am.EndsAt = now
		}
	}
	f.pending = append(f.pending, am)
	if len(f.pending) > 10000 {
		f.pending = f.pending[len(f.pending)-10000:]
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// drop forgets the firing alerts of partitions this worker no longer owns;
// their new owner re-sends them.
func (f *amForwarder) drop(partition int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fp, e := range f.active {
		if e.partition == partition {
			delete(f.active, fp)
		}
	}
}

// run posts queued transitions as they come and re-sends firing alerts
// every resend interval, until ctx ends.
func (f *amForwarder) run(ctx context.Context) {
	tick := time.NewTicker(f.resend)
	defer tick.Stop()
	for {
		resend := false
		select {
		case <-ctx.Done():
			f.post(context.Background(), false) // last news, e.g. resolutions at shutdown
			return
		case <-f.wake:
		case <-tick.C:
			resend = true
		}
		f.post(ctx, resend)
	}
}

func (f *amForwarder) post(ctx context.Context, resend bool) {
	f.mu.Lock()
	batch := f.pending
	f.pending = nil
	if resend {
		until := f.now().Add(4 * f.resend)
		for fp, e := range f.active {
			e.alert.EndsAt = until
			f.active[fp] = e
			batch = append(batch, e.alert)
		}
	}
	f.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := f.postBatch(ctx, batch); err != nil {
		f.m.amSent.WithLabelValues("error").Inc()
		f.log.Warn("could not post alerts to Alertmanager; retrying", "url", f.url, "alerts", len(batch), "err", err)
		f.mu.Lock()
		f.pending = append(batch, f.pending...)
		if len(f.pending) > 10000 {
			f.pending = f.pending[len(f.pending)-10000:]
		}
		f.mu.Unlock()
		return
	}
	f.m.amSent.WithLabelValues("ok").Inc()
}

func (f *amForwarder) postBatch(ctx context.Context, batch []amAlert) error {
	body, err := json.Marshal(batch)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
