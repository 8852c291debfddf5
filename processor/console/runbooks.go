package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/runbook"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// Runbooks (docs/runbooks.md): the Markdown documents of a directory, each
// pipeline block run as a preview (package runbook), edited, saved and
// promoted from the page. The page is assets/runbook.html; the API:
//
//	GET  /api/v1/runbooks                          the documents
//	GET  /api/v1/runbooks/{doc}                    prose (HTML) and blocks
//	POST /api/v1/runbooks/{doc}/blocks/{i}/check   {text}: problems and describe of an edited block
//	GET  /api/v1/runbooks/{doc}/blocks/{i}/live    server-sent snapshots of the block's preview (?text= an edited block)
//	PUT  /api/v1/runbooks/{doc}/blocks/{i}         {old, text}: save the block into the file
//	POST /api/v1/runbooks/{doc}/blocks/{i}/promote {text, app, output, processing}: write a pipeline file
//
// Unlike the rest of the console these write files: the edited document,
// and promoted pipelines under the directory's pipelines/. Writes need a
// JSON body (a form post from another site cannot send one), and sit
// behind the server's guard like every route.

// RunbooksConfig is what Runbooks need. Zero values take the defaults.
type RunbooksConfig struct {
	// Dir holds the runbooks (*.md). Required.
	Dir string
	// Brokers and ClientOpts reach the Kafka the previews read. Required.
	Brokers    []string
	ClientOpts []kgo.Opt
	// Registry decodes Avro records; nil shows them as bytes.
	Registry schema.Registry
	// NewEngine makes a preview's engine (processor.Local). Required.
	NewEngine runbook.NewEngine
	Logger    *slog.Logger
	Now       func() time.Time
	// MaxReadRate bounds each source read (records/s). Default 1000.
	MaxReadRate int
	// IdleStop stops a preview nobody watches. Default 2m.
	IdleStop time.Duration
	// MaxPreviews bounds the previews running at once. Default 32.
	MaxPreviews int
	// RunCommand is how the page shows `eddy run` for a promoted file:
	// the flags after "-f FILE". Default "--brokers " + Brokers.
	RunCommand string
}

// Runbooks serves runbooks. Create with NewRunbooks; Close stops every
// preview.
type Runbooks struct {
	cfg RunbooksConfig
	log *slog.Logger
	hub *runbook.Hub
	mgr *runbook.Manager
	dec *schema.Decoder
	ctx context.Context
	end context.CancelFunc
}

// NewRunbooks validates cfg.
func NewRunbooks(cfg RunbooksConfig) (*Runbooks, error) {
	if cfg.Dir == "" {
		return nil, errors.New("runbooks: a directory is required")
	}
	if st, err := os.Stat(cfg.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("runbooks: %s is not a directory", cfg.Dir)
	}
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("runbooks: brokers are required")
	}
	if cfg.NewEngine == nil {
		return nil, errors.New("runbooks: NewEngine is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RunCommand == "" {
		cfg.RunCommand = "--brokers " + strings.Join(cfg.Brokers, ",")
	}
	rb := &Runbooks{cfg: cfg, log: cfg.Logger.With("component", "runbooks")}
	if cfg.Registry != nil {
		rb.dec = schema.NewDecoder(cfg.Registry)
	}
	rb.hub = runbook.NewHub(runbook.HubConfig{Brokers: cfg.Brokers, ClientOpts: cfg.ClientOpts, MaxReadRate: cfg.MaxReadRate, Logger: cfg.Logger})
	rb.mgr = runbook.NewManager(runbook.ManagerConfig{
		Hub: rb.hub, NewEngine: cfg.NewEngine, Now: cfg.Now, Logger: cfg.Logger,
		IdleStop: cfg.IdleStop, MaxPreviews: cfg.MaxPreviews,
		Fields: func(ctx context.Context, rec *kgo.Record) map[string]any {
			return decodeWith(ctx, rb.dec, rec).Value
		},
	})
	rb.ctx, rb.end = context.WithCancel(context.Background())
	return rb, nil
}

// Close stops every preview and source reader. Idempotent.
func (rb *Runbooks) Close() {
	rb.end()
	rb.mgr.Close()
	rb.hub.Close()
}

// Running is how many previews run (for tests and the benchmark).
func (rb *Runbooks) Running() int { return rb.mgr.Running() }

// routes adds the runbook API to mux.
func (rb *Runbooks) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/runbooks", rb.handleList)
	mux.HandleFunc("GET /api/v1/runbooks/{doc}", rb.handleDoc)
	mux.HandleFunc("POST /api/v1/runbooks/{doc}/blocks/{i}/check", rb.handleCheck)
	mux.HandleFunc("GET /api/v1/runbooks/{doc}/blocks/{i}/live", rb.handleLive)
	mux.HandleFunc("PUT /api/v1/runbooks/{doc}/blocks/{i}", rb.handleSave)
	mux.HandleFunc("POST /api/v1/runbooks/{doc}/blocks/{i}/promote", rb.handlePromote)
}

// Handler serves the runbooks alone (`eddy runbook serve`): the page and
// its assets under /console/, / redirecting to the runbooks page, and the
// runbook API.
func (rb *Runbooks) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /console/", http.StripPrefix("/console/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/runbook.html", http.StatusFound)
	})
	rb.routes(mux)
	return mux
}

// docPath is the file of a document name, which must be a plain *.md
// file name in Dir (no path).
func (rb *Runbooks) docPath(name string) (string, error) {
	if name == "" || name != filepath.Base(name) || !strings.HasSuffix(name, ".md") || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("no runbook %q: a runbook is a .md file in %s", name, rb.cfg.Dir)
	}
	return filepath.Join(rb.cfg.Dir, name), nil
}

func (rb *Runbooks) load(name string) (*runbook.Document, error) {
	p, err := rb.docPath(name)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return runbook.Parse(name, src), nil
}

type runbookListJSON struct {
	Dir      string   `json:"dir"`
	Runbooks []string `json:"runbooks"`
	Running  int      `json:"running"`
}

func (rb *Runbooks) handleList(w http.ResponseWriter, _ *http.Request) {
	ents, err := os.ReadDir(rb.cfg.Dir)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	out := runbookListJSON{Dir: rb.cfg.Dir, Runbooks: []string{}, Running: rb.mgr.Running()}
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".md") && !strings.HasPrefix(e.Name(), ".") {
			out.Runbooks = append(out.Runbooks, e.Name())
		}
	}
	sort.Strings(out.Runbooks)
	writeJSON(w, http.StatusOK, out)
}

// blockJSON is one block as the page gets it.
type blockJSON struct {
	Index    int               `json:"index"`
	Line     int               `json:"line"`
	Text     string            `json:"text"`
	OK       bool              `json:"ok"`
	Problems []runbook.Problem `json:"problems"`
	Display  runbook.Display   `json:"display"`
	Describe string            `json:"describe,omitempty"`
	Topic    string            `json:"topic,omitempty"`
	Units    map[string]string `json:"units,omitempty"`
}

func blockOut(b *runbook.Block) blockJSON {
	out := blockJSON{Index: b.Index, Line: b.Line, Text: b.Text, OK: b.OK(), Problems: b.Problems, Display: b.Display, Describe: b.Describe()}
	if out.Problems == nil {
		out.Problems = []runbook.Problem{}
	}
	if b.Spec != nil {
		out.Topic = strings.Join(b.Spec.Source.Topics, ", ")
		out.Units = map[string]string{}
		for _, a := range b.Rollup.Aggregates { // the displayed rollup's
			out.Units[a.Name] = unitOf(a)
		}
	}
	return out
}

type docJSON struct {
	Name   string         `json:"name"`
	Parts  []runbook.Part `json:"parts"`
	Blocks []blockJSON    `json:"blocks"`
}

func (rb *Runbooks) handleDoc(w http.ResponseWriter, r *http.Request) {
	d, err := rb.load(r.PathValue("doc"))
	if err != nil {
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return
	}
	parts, err := d.Parts()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	out := docJSON{Name: d.Name, Parts: parts, Blocks: []blockJSON{}}
	for _, b := range d.ParseBlocks(rb.cfg.Now()) {
		out.Blocks = append(out.Blocks, blockOut(b))
	}
	writeJSON(w, http.StatusOK, out)
}

// block returns the document and block i, with text in place of the
// block's own when text is not nil (an edit not saved yet).
func (rb *Runbooks) block(w http.ResponseWriter, r *http.Request, text *string) (*runbook.Document, *runbook.Block, bool) {
	d, err := rb.load(r.PathValue("doc"))
	if err != nil {
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return nil, nil, false
	}
	i, err := strconv.Atoi(r.PathValue("i"))
	if err != nil || i < 0 || i >= len(d.Blocks) {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("runbook %s has no block %s (it has %d)", d.Name, r.PathValue("i"), len(d.Blocks))})
		return nil, nil, false
	}
	t := string(d.Text(i))
	if text != nil {
		t = *text
	}
	return d, runbook.ParseBlock(i, d.Blocks[i].Line, t, rb.cfg.Now()), true
}

// readBody decodes a JSON body into v; anything else is refused (a form
// posted from another site cannot set this content type).
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, apiError{Error: "send the body as application/json"})
		return false
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "body: " + err.Error()})
		return false
	}
	return true
}

type textBody struct {
	Text *string `json:"text"`
}

func (rb *Runbooks) handleCheck(w http.ResponseWriter, r *http.Request) {
	var body textBody
	if !readBody(w, r, &body) {
		return
	}
	_, b, ok := rb.block(w, r, body.Text)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, blockOut(b))
}

// liveJSON is one "snapshot" event of a block's preview.
type liveJSON struct {
	runbook.Snapshot
	Events []Record `json:"events,omitempty"`
}

// handleLive streams the block's preview: a "snapshot" event when its
// display changed (at most one a second), "problems" (and the end) when
// the block cannot run.
func (rb *Runbooks) handleLive(w http.ResponseWriter, r *http.Request) {
	var text *string
	if r.URL.Query().Has("text") {
		t := r.URL.Query().Get("text")
		text = &t
	}
	d, b, ok := rb.block(w, r, text)
	if !ok {
		return
	}
	if !b.OK() {
		writeJSON(w, http.StatusUnprocessableEntity, blockOut(b))
		return
	}
	p, release, err := rb.mgr.Open(d.Name+"#"+strconv.Itoa(b.Index), b)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, runbook.ErrTooManyPreviews) {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, apiError{Error: err.Error()})
		return
	}
	defer release()
	sse := newSSE(w, 5*time.Second, rb.cfg.Now)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := int64(-1)
	var lastStats runbook.Stats
	pings := 0
	for {
		s := p.Snapshot()
		if s.Version != last || s.Stats != lastStats {
			last, lastStats = s.Version, s.Stats
			out := liveJSON{Snapshot: s}
			for _, e := range s.Events {
				out.Events = append(out.Events, decodeWith(r.Context(), rb.dec, e.Record))
			}
			if err := sse.send("snapshot", out); err != nil {
				return
			}
			pings = 0
		} else if pings++; pings >= 15 {
			if err := sse.ping(); err != nil {
				return
			}
			pings = 0
		}
		if s.Stopped != "" {
			return
		}
		select {
		case <-tick.C:
		case <-p.Done():
		case <-r.Context().Done():
			return
		case <-rb.ctx.Done():
			return
		}
	}
}

type saveBody struct {
	// Old is the block's text as the page loaded it: the save is refused
	// (409) when the file's block differs (someone else saved).
	Old  *string `json:"old"`
	Text string  `json:"text"`
}

type saveJSON struct {
	Saved string    `json:"saved"`
	Block blockJSON `json:"block"`
}

func (rb *Runbooks) handleSave(w http.ResponseWriter, r *http.Request) {
	var body saveBody
	if !readBody(w, r, &body) {
		return
	}
	d, b, ok := rb.block(w, r, &body.Text)
	if !ok {
		return
	}
	if body.Old != nil && *body.Old != string(d.Text(b.Index)) {
		writeJSON(w, http.StatusConflict, apiError{Error: "the block changed in the file since the page loaded it; reload the page"})
		return
	}
	out, err := d.Replace(b.Index, []byte(body.Text))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	}
	p, _ := rb.docPath(d.Name)
	if err := writeFileAtomic(p, out); err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	rb.log.Info("runbook saved", "file", p, "block", b.Index+1)
	writeJSON(w, http.StatusOK, saveJSON{Saved: p, Block: blockOut(b)})
}

// writeFileAtomic replaces path with data (a temporary file renamed over
// it), keeping the file's mode.
func writeFileAtomic(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

type promoteBody struct {
	Text       *string `json:"text"`
	App        string  `json:"app"`
	Output     string  `json:"output"`
	Processing string  `json:"processing"`
}

type promoteJSON struct {
	// Path is the pipeline file written; Command runs it.
	Path    string `json:"path"`
	Command string `json:"command"`
	YAML    string `json:"yaml"`
}

// handlePromote writes the block as a pipeline file,
// <dir>/pipelines/<app>.yaml, that `eddy run -f` accepts as it is.
func (rb *Runbooks) handlePromote(w http.ResponseWriter, r *http.Request) {
	var body promoteBody
	if !readBody(w, r, &body) {
		return
	}
	d, b, ok := rb.block(w, r, body.Text)
	if !ok {
		return
	}
	if !b.OK() {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Error: "the block has errors; fix them first"})
		return
	}
	switch body.Processing {
	case "", topology.AtLeastOnce, topology.ExactlyOnce:
	default:
		writeJSON(w, http.StatusBadRequest, apiError{Error: "processing: write at_least_once or exactly_once"})
		return
	}
	yml, err := b.Promote(d.Name, runbook.PromoteOptions{
		App: body.App, Output: body.Output, Processing: body.Processing,
		Header: fmt.Sprintf("Promoted from runbook %s, block %d (line %d), on %s.", d.Name, b.Index+1, b.Line, rb.cfg.Now().UTC().Format(time.RFC3339)),
	})
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Error: err.Error()})
		return
	}
	spec, err := topology.Parse(yml)
	if err != nil { // Promote checked it; kept as the invariant it is
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	dir := filepath.Join(rb.cfg.Dir, "pipelines")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	p := filepath.Join(dir, spec.App+".yaml")
	if err := writeFileAtomic(p, yml); err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	rb.log.Info("runbook block promoted", "runbook", d.Name, "block", b.Index+1, "file", p)
	writeJSON(w, http.StatusOK, promoteJSON{Path: p, Command: "eddy run -f " + p + " " + rb.cfg.RunCommand, YAML: string(yml)})
}
