// Package console is eddy's web console: a read-only page and JSON API
// served by every worker on its --http-addr (and by `eddy demo`).
//
// Files:
//
//	console.go  Config, New, the routes, the pipeline's steps (which topic each view reads)
//	tail.go     tailing a step: an ephemeral reader (no group, no commits), filter, sampling
//	sse.go      server-sent events: one stream per open view, bounded, slow clients dropped
//	results.go  results of one key over a time range, read from the output topic
//	windows.go  open windows of a key, from this worker's state
//	alerts.go   alerts firing now and their history, from the alerts topic
//	status.go   the pipeline picture: the group from Kafka, this worker's rates and times from its metrics
//	records.go  what a record looks like on the wire of the API (decoded value, headers in words)
//	runbooks.go runbooks: documents with pipeline blocks run as previews (package runbook); edit, save, promote
//	assets/     the page: plain HTML and ES modules, uPlot (vendor/uplot), embedded with go:embed
//
// A pipeline with several rollups (topology.Spec.Rollups) is shown rollup
// by rollup: the console keeps one spec per rollup (Spec.RollupSpecs), and
// results, open windows and alerts take a rollup parameter (default the
// first), each rollup's output and alerts topics are steps of their own
// ("output:NAME", "alerts:NAME"), and the picture has a node per rollup.
// The top-level spec of such a pipeline has no key, window, aggregates,
// output or alerts: every use of them goes through a rollup's spec.
//
// Nothing here writes to Kafka or changes the pipeline (runbooks write
// their own files: saved documents and promoted pipeline files): every reader is a
// kgo client without a consumer group that commits nothing, so opening a
// view never disturbs the workers' group or offsets.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

//go:embed assets
var assets embed.FS

// Config is what the console needs. Zero values take the documented defaults.
type Config struct {
	// Spec is the pipeline the console shows. Required.
	Spec *topology.Spec
	// Brokers and ClientOpts (TLS, SASL) reach the pipeline's Kafka.
	// Brokers is required.
	Brokers    []string
	ClientOpts []kgo.Opt
	// Registry decodes Avro values (Confluent wire format); nil shows
	// them as bytes.
	Registry schema.Registry
	Logger   *slog.Logger
	// Now is the wall clock. Default time.Now.
	Now func() time.Time
	// MaxViews bounds the streams open at once over all clients; more are
	// refused with 503. Default 32.
	MaxViews int
	// MaxRate is the most records per second one view is sent; above it
	// the server samples ("showing 1 in N"). Default 100.
	MaxRate int
	// MaxReadRate is the most records per second the reader of one
	// tailed topic (shared by its views) decodes, the newest of each
	// fetch; the others are skipped and counted. Default 1000.
	MaxReadRate int
	// WriteTimeout: a client that has not taken one event within it is
	// dropped. Default 5s.
	WriteTimeout time.Duration
	// OpenWindows, if set, returns the open windows of a grouping key in
	// this worker's state (the *processor.App's OpenWindows): of the
	// pipeline's first rollup only. OpenWindowsIn, if set, is used instead.
	OpenWindows func(key string) ([]json.RawMessage, error)
	// OpenWindowsIn returns the open windows of a grouping key in the
	// rollup so named ("" the first) in this worker's state (the
	// *processor.App's OpenWindowsIn).
	OpenWindowsIn func(rollup, key string) ([]json.RawMessage, error)
	// SelfURL is this worker's console base URL as its peers reach it
	// (the URL it advertises in its client id, processor.AdvertiseSuffix).
	// With it, GET /api/v1/windows is forwarded to the key's owner;
	// without it, it is answered from this worker's state only.
	SelfURL string
	// PeerClient forwards queries to the owner. Default: an http.Client
	// with a 5s timeout.
	PeerClient *http.Client
	// Gatherer is the worker's Prometheus registry: the pipeline picture
	// reads this worker's rates, stream times, open windows, restore
	// progress and commits from it (status.go). Nil: the picture shows the
	// group from Kafka only.
	Gatherer prometheus.Gatherer
	// Runbooks, if set, are served beside the console (runbooks.go):
	// the page /console/runbook.html and /api/v1/runbooks. The caller
	// closes them.
	Runbooks *Runbooks
}

// Console serves the page and the API. Create with New; Handler serves it;
// Close ends every open view.
type Console struct {
	cfg   Config
	log   *slog.Logger
	views chan struct{} // semaphore: one slot per open stream
	// rollups are the pipeline's rollups, one spec each
	// (topology.Spec.RollupSpecs): in the single-rollup form, the spec.
	rollups []*topology.Spec
	dec     *schema.Decoder

	ctx    context.Context // ends every view on Close
	cancel context.CancelFunc

	tailsMu sync.Mutex             // guards tails
	tails   map[string]*tailReader // by topic: one reader shared by its tails
}

// New validates cfg.
func New(cfg Config) (*Console, error) {
	if cfg.Spec == nil {
		return nil, errors.New("console: Config.Spec is required")
	}
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("console: Config.Brokers is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxViews <= 0 {
		cfg.MaxViews = 32
	}
	if cfg.MaxRate <= 0 {
		cfg.MaxRate = 100
	}
	if cfg.MaxReadRate <= 0 {
		cfg.MaxReadRate = 1000
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.PeerClient == nil {
		cfg.PeerClient = &http.Client{Timeout: 5 * time.Second}
	}
	c := &Console{cfg: cfg, log: cfg.Logger.With("component", "console"), views: make(chan struct{}, cfg.MaxViews), rollups: cfg.Spec.RollupSpecs(), tails: map[string]*tailReader{}}
	if cfg.Registry != nil {
		c.dec = schema.NewDecoder(cfg.Registry)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close ends every open view. Idempotent.
func (c *Console) Close() { c.cancel() }

// Handler serves the page under /console/ (and / redirects there) and the
// API under /api/v1/. Every route is read-only (GET), but for the
// runbooks' save and promote.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /console/", http.StripPrefix("/console/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusFound)
	})
	mux.HandleFunc("GET /api/v1/pipeline", c.handlePipeline)
	mux.HandleFunc("GET /api/v1/expr", c.handleExpr)
	mux.HandleFunc("GET /api/v1/tail", c.handleTail)
	mux.HandleFunc("GET /api/v1/results", c.handleResults)
	mux.HandleFunc("GET /api/v1/status", c.handleStatus)
	mux.HandleFunc("GET /api/v1/alerts", c.handleAlerts)
	mux.HandleFunc("GET /api/v1/windows", c.handleWindows)
	mux.HandleFunc("GET /api/v1/status/live", c.handleStatusLive)
	if c.cfg.Runbooks != nil {
		c.cfg.Runbooks.routes(mux)
	}
	return mux
}

// Step is one place in the pipeline a view can read: its name in the API
// (input, late, dead-letter, output, alerts) and its topic.
type Step struct {
	Step  string `json:"step"`
	Topic string `json:"topic"`
	// What the step's records are, in a few words.
	Purpose string `json:"purpose"`
	// Rollup names the rollup whose output or alerts the step is, in a
	// pipeline with several rollups; empty otherwise.
	Rollup string `json:"rollup,omitempty"`
}

// Steps of the API's step parameter.
const (
	StepInput      = "input"
	StepLate       = "late"
	StepDeadLetter = "dead-letter"
	StepOutput     = "output"
	StepAlerts     = "alerts"
)

// steps lists the pipeline's readable steps, in flow order. Several input
// topics are several input steps ("input" reads the first; "input:NAME"
// another). In a pipeline with several rollups, each rollup's output and
// alerts are the steps "output:ROLLUP" and "alerts:ROLLUP" (and "output"
// and "alerts" read the first rollup's that has one).
func (c *Console) steps() []Step {
	s := c.cfg.Spec
	var out []Step
	for i, t := range s.Source.Topics {
		name := StepInput
		if i > 0 {
			name = StepInput + ":" + t
		}
		out = append(out, Step{Step: name, Topic: t, Purpose: "records as producers wrote them"})
	}
	if !s.MultiRollup() {
		out = append(out, Step{Step: StepOutput, Topic: s.Output.Topic, Purpose: "one result per key and window"})
	} else {
		for _, r := range c.rollups {
			out = append(out, Step{Step: StepOutput + ":" + r.RollupName, Topic: r.Output.Topic, Rollup: r.RollupName,
				Purpose: "rollup " + r.RollupName + ": one result per key and window"})
		}
	}
	out = append(out,
		Step{Step: StepLate, Topic: s.LateTopic, Purpose: "records that arrived after their window closed"},
		Step{Step: StepDeadLetter, Topic: s.DeadLetterTopic, Purpose: "records that could not be processed, with the reason"},
	)
	for _, r := range c.rollups {
		if r.Alerts == nil || len(r.Alerts.Rules) == 0 {
			continue
		}
		if !s.MultiRollup() {
			out = append(out, Step{Step: StepAlerts, Topic: r.AlertsTopic(), Purpose: "alert transitions: firing and resolved"})
			continue
		}
		out = append(out, Step{Step: StepAlerts + ":" + r.RollupName, Topic: r.AlertsTopic(), Rollup: r.RollupName,
			Purpose: "rollup " + r.RollupName + ": alert transitions, firing and resolved"})
	}
	return out
}

func (c *Console) stepTopic(step string) (string, bool) {
	steps := c.steps()
	for _, s := range steps {
		if s.Step == step || (step == "" && s.Step == StepInput) {
			return s.Topic, true
		}
		if step == StepInput+":"+s.Topic && s.Step == StepInput {
			return s.Topic, true
		}
	}
	// With several rollups, "output" and "alerts" are the first rollup's
	// that has one.
	for _, s := range steps {
		if (step == StepOutput || step == StepAlerts) && strings.HasPrefix(s.Step, step+":") {
			return s.Topic, true
		}
	}
	return "", false
}

// rollupSpec is the spec of the rollup named name: "" is the first (in
// the single-rollup form, the pipeline's spec). ok is false when the
// pipeline has no rollup so named.
func (c *Console) rollupSpec(name string) (*topology.Spec, bool) {
	if name == "" {
		return c.rollups[0], true
	}
	for _, r := range c.rollups {
		if r.RollupName == name {
			return r, true
		}
	}
	return nil, false
}

// rollupParam reads the rollup parameter of r and answers 400 when the
// pipeline has no rollup so named.
func (c *Console) rollupParam(w http.ResponseWriter, r *http.Request) (*topology.Spec, bool) {
	name := r.URL.Query().Get("rollup")
	rs, ok := c.rollupSpec(name)
	if !ok {
		var names []string
		for _, x := range c.rollups {
			names = append(names, x.RollupName)
		}
		msg := "rollup: this pipeline has no rollups list; leave the parameter out"
		if c.cfg.Spec.MultiRollup() {
			msg = "rollup: " + strconv.Quote(name) + " is not a rollup of this pipeline; write one of " + strings.Join(names, ", ")
		}
		writeJSON(w, http.StatusBadRequest, apiError{Error: msg})
	}
	return rs, ok
}

// pipelineJSON is GET /api/v1/pipeline. Key, Aggregates and Window are
// the first rollup's; Rollups lists every rollup of a pipeline with
// several (absent in the single-rollup form).
type pipelineJSON struct {
	App        string       `json:"app"`
	Key        []string     `json:"key"`
	Aggregates []aggJSON    `json:"aggregates"`
	Window     windowJSON   `json:"window"`
	Steps      []Step       `json:"steps"`
	Rollups    []rollupJSON `json:"rollups,omitempty"`
}

type windowJSON struct {
	Type      string `json:"type"`
	SizeMs    int64  `json:"size_ms"`
	AdvanceMs int64  `json:"advance_ms,omitempty"`
	GraceMs   int64  `json:"grace_ms"`
	Emit      string `json:"emit"`
}

// rollupJSON is one rollup of a pipeline with several.
type rollupJSON struct {
	Name string `json:"name"`
	// From names the rollup whose final results this one merges (a
	// chained rollup); empty when it reads the source.
	From       string     `json:"from,omitempty"`
	Key        []string   `json:"key"`
	Aggregates []aggJSON  `json:"aggregates"`
	Window     windowJSON `json:"window"`
	Store      string     `json:"store"`
	// Repartition is the topic its records are re-keyed through (shared
	// by the rollups of one key); empty when the source is keyed by the
	// grouping key.
	Repartition string `json:"repartition,omitempty"`
	Output      string `json:"output"`
	Alerts      string `json:"alerts,omitempty"`
}

type aggJSON struct {
	Name  string `json:"name"`
	Op    string `json:"op"`
	Field string `json:"field,omitempty"`
	// Unit is what the values are in, for chart axes: "records" for
	// counts, else the field's name (e.g. "latency_ms").
	Unit string `json:"unit"`
}

func windowOfSpec(s *topology.Spec) windowJSON {
	return windowJSON{Type: s.Window.Type, SizeMs: s.Window.Size.Milliseconds(), AdvanceMs: s.Window.Advance.Milliseconds(),
		GraceMs: s.Window.Grace.Milliseconds(), Emit: s.Emit}
}

func aggsOf(s *topology.Spec) []aggJSON {
	var out []aggJSON
	for _, a := range s.Aggregates {
		out = append(out, aggJSON{Name: a.Name, Op: a.Op, Field: a.Field, Unit: unitOf(a)})
	}
	return out
}

func (c *Console) handlePipeline(w http.ResponseWriter, _ *http.Request) {
	first := c.rollups[0]
	p := pipelineJSON{App: c.cfg.Spec.App, Key: first.Key, Aggregates: aggsOf(first), Window: windowOfSpec(first), Steps: c.steps()}
	if c.cfg.Spec.MultiRollup() {
		for _, r := range c.rollups {
			rj := rollupJSON{Name: r.RollupName, From: r.From, Key: r.Key, Aggregates: aggsOf(r), Window: windowOfSpec(r),
				Store: r.Store, Output: r.Output.Topic}
			if r.NeedsRepartition() {
				rj.Repartition = r.RepartitionTopic()
			}
			if r.Alerts != nil && len(r.Alerts.Rules) > 0 {
				rj.Alerts = r.AlertsTopic()
			}
			p.Rollups = append(p.Rollups, rj)
		}
	}
	writeJSON(w, http.StatusOK, p)
}

// unitOf names what an aggregate's values are in.
func unitOf(a topology.Aggregate) string {
	switch a.Op {
	case "count", "count_distinct", "distinct":
		return "records"
	}
	if a.Field != "" {
		return a.Field
	}
	return a.Op
}

// exprJSON is GET /api/v1/expr?filter=...: whether a filter compiles.
type exprJSON struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Hint    string `json:"hint,omitempty"`
	Example string `json:"example,omitempty"`
}

func (c *Console) handleExpr(w http.ResponseWriter, r *http.Request) {
	_, err := compileFilter(r.URL.Query().Get("filter"))
	writeJSON(w, http.StatusOK, exprReport(err))
}

func exprReport(err error) exprJSON {
	if err == nil {
		return exprJSON{OK: true}
	}
	var ee *topology.ExprError
	if errors.As(err, &ee) {
		return exprJSON{Error: ee.Error(), Line: ee.Line, Column: ee.Column, Hint: ee.Hint, Example: `status >= 500 && endpoint != "/healthz"`}
	}
	return exprJSON{Error: err.Error()}
}

// compileFilter compiles a tail filter in the pipeline's expression
// language; "" is no filter (nil).
func compileFilter(src string) (*topology.Expr, error) {
	if src == "" {
		return nil, nil
	}
	return topology.CompileBool(src, nil)
}

// apiError is the body of every API error.
type apiError struct {
	Error string `json:"error"`
	// Detail is set for a filter that does not compile.
	Detail *exprJSON `json:"detail,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
