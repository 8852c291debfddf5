package runbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// A preview runs one block: its source records (from the Hub) go through
// the engine in memory, processor.Local, the code `eddy run` runs, and
// what eddy run would write (results, late records, dead letters, alerts)
// stays here, folded into the block's display. One goroutine owns the
// engine; the page reads the display through Snapshot.
//
// Bounds, each said on the page when reached (Snapshot.Bounds):
//   - memory: the engine keeps at most MaxOpenWindows open windows (past
//     it records are refused and counted), the display at most MaxKeys
//     keys and keepWindows windows per key;
//   - run time: a preview nobody watches stops after IdleStop, and starts
//     again (from now) when viewed;
//   - read rate: its source passes at most HubConfig.MaxReadRate records a
//     second; past it the preview runs on a sample.

// Engine is one preview's pipeline in memory: *processor.Local.
type Engine interface {
	Feed(ctx context.Context, rec *kgo.Record, now time.Time) error
	Advance(now time.Time) error
	Drain() []*kgo.Record
	Close() error
}

// NewEngine makes the engine of a block's pipeline.
type NewEngine func(ctx context.Context, spec *topology.Spec) (Engine, error)

// ManagerConfig is what previews need. Zero values take the defaults.
type ManagerConfig struct {
	Hub       *Hub
	NewEngine NewEngine
	// Fields decodes a record's value for an events filter (nil when it
	// has none it can read). Default: JSON objects only.
	Fields func(ctx context.Context, rec *kgo.Record) map[string]any
	Now    func() time.Time
	Logger *slog.Logger
	// MaxPreviews bounds the previews running at once. Default 32.
	MaxPreviews int
	// MaxKeys bounds the keys one display keeps. Default 1000.
	MaxKeys int
	// IdleStop stops a preview nobody has watched for this long. Default 2m.
	IdleStop time.Duration
	// Tick is how often a preview advances its engine's clock. Default 500ms.
	Tick time.Duration
}

// Manager owns the running previews. Safe for concurrent use.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	mu       sync.Mutex
	previews map[string]*Preview
	wg       sync.WaitGroup
	closed   bool
}

// ErrTooManyPreviews is returned by Open past ManagerConfig.MaxPreviews.
var ErrTooManyPreviews = errors.New("too many previews running; close some pages")

// NewManager makes a Manager.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPreviews <= 0 {
		cfg.MaxPreviews = 32
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 1000
	}
	if cfg.IdleStop <= 0 {
		cfg.IdleStop = 2 * time.Minute
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 500 * time.Millisecond
	}
	if cfg.Fields == nil {
		cfg.Fields = jsonFields
	}
	return &Manager{cfg: cfg, log: cfg.Logger.With("component", "runbook-preview"), previews: map[string]*Preview{}}
}

func jsonFields(_ context.Context, rec *kgo.Record) map[string]any {
	var m map[string]any
	if json.Unmarshal(rec.Value, &m) != nil {
		return nil
	}
	return m
}

// Open returns the running preview of id (a document and block) for b,
// starting it if none runs, and counts one viewer until release is called.
// A running preview of other text (the block was edited) is replaced when
// nobody watches it, else the edited text runs beside it.
func (m *Manager) Open(id string, b *Block) (p *Preview, release func(), err error) {
	if !b.OK() {
		return nil, nil, errors.New("the block has errors")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, errors.New("runbooks: closed")
	}
	p = m.previews[id]
	if p != nil && p.block.Text != b.Text {
		p.mu.Lock()
		watched := p.viewers > 0
		p.mu.Unlock()
		if watched {
			// Someone (another page) watches the other text: both run,
			// this one under an id of its own text.
			h := fnv.New64a()
			h.Write([]byte(b.Text))
			id = fmt.Sprintf("%s#%x", id, h.Sum64())
			p = m.previews[id]
		} else {
			p.stop()
			delete(m.previews, id)
			p = nil
		}
	}
	if p == nil {
		if len(m.previews) >= m.cfg.MaxPreviews {
			return nil, nil, ErrTooManyPreviews
		}
		if p, err = m.start(id, b); err != nil {
			return nil, nil, err
		}
		m.previews[id] = p
	}
	p.mu.Lock()
	p.viewers++
	p.mu.Unlock()
	var once sync.Once
	return p, func() {
		once.Do(func() {
			p.mu.Lock()
			p.viewers--
			p.lastView = m.cfg.Now()
			p.mu.Unlock()
		})
	}, nil
}

// Stop ends the preview of id, if one runs.
func (m *Manager) Stop(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.previews[id]; p != nil {
		p.stop()
		delete(m.previews, id)
	}
}

// Close stops every preview and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	for id, p := range m.previews {
		p.stop()
		delete(m.previews, id)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// Running is how many previews run.
func (m *Manager) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.previews)
}

func (m *Manager) start(id string, b *Block) (*Preview, error) {
	spec := *b.Spec
	// A preview's results are decoded here: JSON whatever the block says
	// (it writes nothing, so the output format is not seen outside).
	spec.Output.Format = topology.FormatJSON
	spec.Rollups = slices.Clone(spec.Rollups)
	for i := range spec.Rollups {
		spec.Rollups[i].Output.Format = topology.FormatJSON
	}
	// The rollup the display shows (the spec itself in the single form).
	rollup := spec.RollupSpecs()[0]
	for _, r := range spec.RollupSpecs() {
		if r.RollupName == b.Display.Rollup {
			rollup = r
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	eng, err := m.cfg.NewEngine(ctx, &spec)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("preview: %w", err)
	}
	p := &Preview{
		id: id, block: b, spec: &spec, rollup: rollup, eng: eng, cancel: cancel, done: make(chan struct{}),
		cfg: &m.cfg, keys: map[string]*keySeries{}, started: m.cfg.Now(), lastView: m.cfg.Now(),
	}
	if b.Display.Filter != "" {
		p.filter, _ = topology.CompileBool(b.Display.Filter, nil) // checked by ParseBlock
	}
	// One subscription per source topic, their batches fanned in.
	p.in = make(chan []*kgo.Record, subBuffer)
	var fwd sync.WaitGroup
	for _, topic := range spec.Source.Topics {
		sub := m.cfg.Hub.Subscribe(topic, b.From)
		p.subs = append(p.subs, sub)
		fwd.Add(1)
		go func() {
			defer fwd.Done()
			for {
				select {
				case recs := <-sub.C:
					select {
					case p.in <- recs:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(p.done)
		p.run(ctx)
		cancel()
		fwd.Wait()
		for _, sub := range p.subs {
			sub.Close()
		}
		_ = p.eng.Close()
		m.mu.Lock()
		if m.previews[id] == p {
			delete(m.previews, id)
		}
		m.mu.Unlock()
	}()
	return p, nil
}

// keepWindows is how many windows of each key a display keeps.
const keepWindows = 120

// Preview is one running block.
type Preview struct {
	id     string
	block  *Block
	spec   *topology.Spec
	rollup *topology.Spec  // the rollup displayed: spec, or one of its RollupSpecs
	eng    Engine          // owned by run's goroutine
	subs   []*Subscription // one per source topic
	in     chan []*kgo.Record
	cancel context.CancelFunc
	done   chan struct{}
	cfg    *ManagerConfig
	filter *topology.Expr

	mu       sync.Mutex // guards what follows: the display state
	viewers  int
	lastView time.Time
	started  time.Time
	version  int64
	keys     map[string]*keySeries
	latest   []Window // table: the latest results, newest last
	events   []Event  // events: the last N matching records, oldest first
	fed      int64
	late     int64
	dead     int64
	refused  int64
	dropKeys int64
	stopped  string // why the preview stopped, "" while it runs
	engErr   string
}

// Window is one result of the preview (one key, one window), decoded.
type Window struct {
	Key   string         `json:"key"`
	Start int64          `json:"start"` // ms
	End   int64          `json:"end"`   // ms
	Value map[string]any `json:"value"`
}

type keySeries struct {
	wins map[int64]float64 // window start -> display value
	last int64             // latest window start
}

// Event is one record an events display lists.
type Event struct {
	Record *kgo.Record
	// Fields is the decoded value (nil when it is not readable).
	Fields map[string]any
}

func (p *Preview) stop() { p.cancel() }

// Done is closed when the preview has stopped.
func (p *Preview) Done() <-chan struct{} { return p.done }

// Block is the block the preview runs.
func (p *Preview) Block() *Block { return p.block }

func (p *Preview) run(ctx context.Context) {
	tick := time.NewTicker(p.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			p.setStopped("stopped")
			return
		case recs := <-p.in:
			now := p.cfg.Now()
			for _, rec := range recs {
				if p.block.Display.Kind == DisplayEvents && p.block.Display.Step == StepInput {
					p.maybeEvent(ctx, rec)
				}
				err := p.eng.Feed(ctx, rec, now)
				p.mu.Lock()
				p.fed++
				if err != nil {
					p.refused++
					if !isWindowLimit(err) {
						p.engErr = err.Error()
					}
				}
				p.mu.Unlock()
			}
			p.collect(ctx)
		case <-tick.C:
			now := p.cfg.Now()
			if err := p.eng.Advance(now); err != nil {
				p.mu.Lock()
				p.engErr = err.Error()
				p.mu.Unlock()
			}
			p.collect(ctx)
			p.mu.Lock()
			idle := p.viewers == 0 && now.Sub(p.lastView) >= p.cfg.IdleStop
			p.mu.Unlock()
			if idle {
				p.setStopped("nobody watched for " + p.cfg.IdleStop.String())
				return
			}
		}
	}
}

// isWindowLimit: the engine refused a record at its open-window bound
// (processor.ErrWindowLimit; matched by text so this package does not
// import the shell).
func isWindowLimit(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "open window limit reached: record not processed" {
			return true
		}
	}
	return false
}

func (p *Preview) setStopped(why string) {
	p.mu.Lock()
	p.stopped = why
	p.version++
	p.mu.Unlock()
}

func (p *Preview) maybeEvent(ctx context.Context, rec *kgo.Record) {
	fields := p.cfg.Fields(ctx, rec)
	if p.filter != nil {
		env := fields
		if env == nil {
			env = map[string]any{}
		}
		if ok, err := p.filter.Eval(env); err != nil || !ok {
			return
		}
	}
	p.mu.Lock()
	p.events = append(p.events, Event{Record: rec, Fields: fields})
	if n := p.block.Display.Last; len(p.events) > n {
		p.events = append(p.events[:0], p.events[len(p.events)-n:]...)
	}
	p.version++
	p.mu.Unlock()
}

// collect folds what the engine emitted into the display.
func (p *Preview) collect(ctx context.Context) {
	out := p.eng.Drain()
	if len(out) == 0 {
		return
	}
	d := p.block.Display
	for _, rec := range out {
		switch {
		case rec.Topic == p.rollup.Output.Topic:
			var w Window
			var v map[string]any
			if json.Unmarshal(rec.Value, &v) != nil {
				continue
			}
			w.Value = v
			w.Key = keyText(rec.Key)
			w.Start, w.End = msOf(v["window_start"]), msOf(v["window_end"])
			p.addWindow(w)
			if d.Kind == DisplayEvents && d.Step == StepOutput {
				p.maybeEvent(ctx, rec)
			}
		case rec.Topic == p.spec.LateTopic:
			if !p.ofRollup(rec) {
				continue // late for another rollup of the block
			}
			p.mu.Lock()
			p.late++
			p.version++
			p.mu.Unlock()
			if d.Kind == DisplayEvents && d.Step == StepLate {
				p.maybeEvent(ctx, rec)
			}
		case rec.Topic == p.spec.DeadLetterTopic:
			p.mu.Lock()
			p.dead++
			p.version++
			p.mu.Unlock()
			if d.Kind == DisplayEvents && d.Step == StepDeadLetter {
				p.maybeEvent(ctx, rec)
			}
		}
	}
}

// hdrRollup names the rollup of a late or dead-letter record of a
// pipeline with several rollups (the processor's header).
const hdrRollup = "eddy.rollup"

// ofRollup says whether a late record is the displayed rollup's: it names
// it in its eddy.rollup header, or has none (one rollup).
func (p *Preview) ofRollup(rec *kgo.Record) bool {
	for _, h := range rec.Headers {
		if h.Key == hdrRollup {
			return string(h.Value) == p.rollup.RollupName
		}
	}
	return true
}

// keyText shows a result key (the grouping key as a JSON array of
// strings) as "a / b".
func keyText(k []byte) string {
	var parts []string
	if json.Unmarshal(k, &parts) != nil {
		return string(k)
	}
	s := ""
	for i, x := range parts {
		if i > 0 {
			s += " / "
		}
		s += x
	}
	return s
}

func msOf(v any) int64 {
	s, _ := v.(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return t.UnixMilli()
}

func (p *Preview) addWindow(w Window) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.version++
	// Table: the latest windows (an update of a window replaces it).
	replaced := false
	for i := range p.latest {
		if p.latest[i].Key == w.Key && p.latest[i].Start == w.Start {
			p.latest[i], replaced = w, true
			break
		}
	}
	if !replaced {
		p.latest = append(p.latest, w)
		if n := p.block.Display.Rows; len(p.latest) > n {
			p.latest = append(p.latest[:0], p.latest[len(p.latest)-n:]...)
		}
	}
	// Chart: per key, the display value of each window.
	ks := p.keys[w.Key]
	if ks == nil {
		if len(p.keys) >= p.cfg.MaxKeys {
			p.dropKeys++
			return
		}
		ks = &keySeries{wins: map[int64]float64{}}
		p.keys[w.Key] = ks
	}
	f, ok := w.Value[p.block.Display.Value].(float64)
	if !ok {
		return // null: no value in this window (e.g. a mean of nothing)
	}
	ks.wins[w.Start] = f
	if w.Start > ks.last {
		ks.last = w.Start
	}
	if len(ks.wins) > keepWindows {
		oldest := w.Start
		for s := range ks.wins {
			oldest = min(oldest, s)
		}
		delete(ks.wins, oldest)
	}
}

// Snapshot is a preview's display at one moment, as the page gets it.
type Snapshot struct {
	Version int64    `json:"version"`
	Kind    string   `json:"kind"`
	Rollup  string   `json:"rollup,omitempty"`
	Value   string   `json:"value,omitempty"`
	Chart   *Chart   `json:"chart,omitempty"`
	Table   []Window `json:"table,omitempty"`
	Events  []Event  `json:"-"` // the console encodes them (decoded values)
	// Fed counts the records given to the engine; Stats the source read.
	Fed   int64 `json:"fed"`
	Stats Stats `json:"source"`
	// Late and DeadLetters count what eddy run would have written to the
	// late and dead-letter topics (Late: the records late for the
	// displayed rollup).
	Late        int64 `json:"late"`
	DeadLetters int64 `json:"dead_letters"`
	// Bounds says which bounds were reached, in words; empty when none.
	Bounds  []string `json:"bounds,omitempty"`
	Error   string   `json:"error,omitempty"`
	Stopped string   `json:"stopped,omitempty"`
	Started int64    `json:"started"` // ms
}

// Chart is the data of a chart display: window starts (ms) and one series
// per key, null where a key has no window.
type Chart struct {
	Times  []int64  `json:"times"`
	Series []Series `json:"series"`
	// WindowMs is the window size (for the x axis).
	WindowMs int64 `json:"window_ms"`
}

// Series is one key's values, aligned with Chart.Times.
type Series struct {
	Key    string     `json:"key"`
	Values []*float64 `json:"values"`
}

// sourceStats sums the stats of the preview's subscriptions.
func (p *Preview) sourceStats() Stats {
	var st Stats
	st.Reading = true
	for _, sub := range p.subs {
		s := sub.Stats()
		st.Read += s.Read
		st.Skipped += s.Skipped
		st.Readers = max(st.Readers, s.Readers)
		st.Reading = st.Reading && s.Reading
		if st.Err == "" {
			st.Err = s.Err
		}
	}
	return st
}

// Snapshot returns the display now.
func (p *Preview) Snapshot() Snapshot {
	st := p.sourceStats()
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.block.Display
	s := Snapshot{Version: p.version, Kind: d.Kind, Rollup: d.Rollup, Value: d.Value, Fed: p.fed, Stats: st, Late: p.late, DeadLetters: p.dead, Error: p.engErr, Stopped: p.stopped, Started: p.started.UnixMilli()}
	if st.Skipped > 0 {
		s.Bounds = append(s.Bounds, fmt.Sprintf("sampled: the source passed %d records and skipped %d to keep under its read rate, so the values are of a sample", st.Read, st.Skipped))
	}
	if p.refused > 0 {
		s.Bounds = append(s.Bounds, fmt.Sprintf("memory: %d records were refused at the open-window limit", p.refused))
	}
	if p.dropKeys > 0 {
		s.Bounds = append(s.Bounds, fmt.Sprintf("memory: %d results of keys past the first %d were not kept", p.dropKeys, p.cfg.MaxKeys))
	}
	switch d.Kind {
	case DisplayTable:
		s.Table = append([]Window(nil), p.latest...)
	case DisplayEvents:
		s.Events = append([]Event(nil), p.events...)
	case DisplayChart:
		s.Chart = p.chart()
	}
	return s
}

// chart picks the top keys (highest value in their latest window) and
// aligns their series on the union of their window starts.
func (p *Preview) chart() *Chart {
	type kv struct {
		key  string
		last float64
	}
	var all []kv
	for k, ks := range p.keys {
		if v, ok := ks.wins[ks.last]; ok {
			all = append(all, kv{k, v})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].last != all[j].last {
			return all[i].last > all[j].last
		}
		return all[i].key < all[j].key
	})
	if n := p.block.Display.Top; len(all) > n {
		all = all[:n]
	}
	win := p.rollup.Window
	c := &Chart{WindowMs: win.Size.Milliseconds(), Times: []int64{}, Series: []Series{}}
	if win.Type == "hopping" {
		c.WindowMs = win.Advance.Milliseconds()
	} else if win.Type == "session" {
		c.WindowMs = 0
	}
	times := map[int64]bool{}
	for _, k := range all {
		for t := range p.keys[k.key].wins {
			times[t] = true
		}
	}
	for t := range times {
		c.Times = append(c.Times, t)
	}
	sort.Slice(c.Times, func(i, j int) bool { return c.Times[i] < c.Times[j] })
	for _, k := range all {
		sr := Series{Key: k.key, Values: make([]*float64, len(c.Times))}
		for i, t := range c.Times {
			if v, ok := p.keys[k.key].wins[t]; ok {
				sr.Values[i] = &v
			}
		}
		c.Series = append(c.Series, sr)
	}
	return c
}
