package console

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// Results of a time range (GET /api/v1/results): the window results the
// output topic holds, read from the offsets found by timestamp
// (ListOffsetsAfterMilli on `from`) up to the end offsets at the time of
// the request, by an ephemeral reader (no group, no commits). The output
// topic's timestamps are the times eddy wrote the results
// (LogAppendTime), so the range selects results by when they were
// written, which for final results is shortly after the window closed.
//
// Bounded: at most maxScan records are read per request; Truncated says
// when the range held more (narrow it).

const (
	maxScan        = 200_000
	defaultRange   = 15 * time.Minute
	resultsTimeout = 20 * time.Second
	idleRead       = 1500 * time.Millisecond
)

// Window is one window result.
type Window struct {
	// Key is the grouping key, its fields in the pipeline's key order.
	Key           []string `json:"key"`
	WindowStartMs int64    `json:"window_start_ms"`
	WindowEndMs   int64    `json:"window_end_ms"`
	// Final: the window has closed and this is its last result (always,
	// under emit close; under emit update, once a result of a window
	// starting at or after this one's end plus grace has been written,
	// which means stream time passed its close).
	Final bool `json:"final"`
	// Values of the aggregates; null for an aggregate that has no value
	// (e.g. the mean of nothing) and for a top_k aggregate (in Top).
	Values map[string]*float64 `json:"values"`
	// Top holds the top_k aggregates' lists, most frequent first; absent
	// when the pipeline has none.
	Top map[string][]TopEntry `json:"top,omitempty"`
	// Offset and Partition locate the record in the output topic.
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// TopEntry is one value of a top_k aggregate and how many times the
// window saw it.
type TopEntry struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}

// ResultsJSON is the answer of GET /api/v1/results.
type ResultsJSON struct {
	// Rollup is the rollup read, in a pipeline with several.
	Rollup string `json:"rollup,omitempty"`
	Topic  string `json:"topic"`
	FromMs int64  `json:"from_ms"`
	ToMs   int64  `json:"to_ms"`
	// Keys seen in the range, sorted, each with its number of results
	// (all keys, whatever the key parameter).
	Keys []KeyCount `json:"keys"`
	// Windows of the requested key (all keys when none was given), by
	// window start then key; one per key and window (the latest result).
	Windows   []Window `json:"windows"`
	Scanned   int      `json:"scanned"`
	Truncated bool     `json:"truncated"`
}

// KeyCount is a key and how many results it has in the range.
type KeyCount struct {
	Key     []string `json:"key"`
	Results int      `json:"results"`
}

// parseTime reads a time parameter: RFC 3339, or milliseconds since the epoch.
func parseTime(s string) (time.Time, bool) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func (c *Console) handleResults(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := c.cfg.Now()
	from, to := now.Add(-defaultRange), now
	if s := q.Get("from"); s != "" {
		t, ok := parseTime(s)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "from: not an RFC 3339 time or milliseconds since the epoch: " + strconv.Quote(s)})
			return
		}
		from = t
	}
	if s := q.Get("to"); s != "" {
		t, ok := parseTime(s)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "to: not an RFC 3339 time or milliseconds since the epoch: " + strconv.Quote(s)})
			return
		}
		to = t
	}
	rs, ok := c.rollupParam(w, r)
	if !ok {
		return
	}
	var want []string
	if s := q.Get("key"); s != "" {
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: `key: a JSON array of the key's fields, e.g. ["checkout","/pay"]: ` + err.Error()})
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), resultsTimeout)
	defer cancel()
	res, err := c.readResults(ctx, rs, from, to, want)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{Error: "read " + rs.Output.Topic + ": " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// scanTopic calls fn for each record of topic written from `from` on (the
// offsets found by timestamp) up to the end offsets at the call, reading at
// most maxScan records with an ephemeral reader (no group, no commits). It
// returns how many it read and whether it stopped short of the end.
func (c *Console) scanTopic(ctx context.Context, topic string, from time.Time, fn func(*kgo.Record)) (scanned int, truncated bool, err error) {
	opts := append([]kgo.Opt{kgo.SeedBrokers(c.cfg.Brokers...), kgo.ClientID("eddy-console-" + c.cfg.Spec.App)}, c.cfg.ClientOpts...)
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, false, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	starts, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topic)
	if err != nil {
		return 0, false, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, false, err
	}
	assign := map[int32]kgo.Offset{}
	stop := map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		e, ok := ends.Lookup(o.Topic, o.Partition)
		if o.Err != nil || !ok || e.Err != nil || o.Offset >= e.Offset {
			return
		}
		assign[o.Partition] = kgo.NewOffset().At(o.Offset)
		stop[o.Partition] = e.Offset
	})
	if len(assign) == 0 {
		return 0, false, nil
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}))...)
	if err != nil {
		return 0, false, err
	}
	defer cl.Close()
	for len(stop) > 0 && scanned < maxScan {
		// A partition whose end offset follows transaction markers (exactly
		// once) never yields a record at end-1: a poll that brings nothing
		// for idleRead ends the read.
		pctx, pcancel := context.WithTimeout(ctx, idleRead)
		fs := cl.PollFetches(pctx)
		pcancel()
		if err := ctx.Err(); err != nil {
			return scanned, true, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if err != context.DeadlineExceeded {
				ferr = err
			}
		})
		if ferr != nil {
			return scanned, true, ferr
		}
		if fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(rec *kgo.Record) {
			end, ok := stop[rec.Partition]
			if !ok || rec.Offset >= end {
				return
			}
			if rec.Offset+1 >= end {
				delete(stop, rec.Partition)
			}
			scanned++
			fn(rec)
		})
	}
	return scanned, len(stop) > 0, nil
}

// readResults reads the records of the output topic of rollup rs written
// in [from, to].
func (c *Console) readResults(ctx context.Context, rs *topology.Spec, from, to time.Time, want []string) (*ResultsJSON, error) {
	topic := rs.Output.Topic
	res := &ResultsJSON{Rollup: rs.RollupName, Topic: topic, FromMs: from.UnixMilli(), ToMs: to.UnixMilli(), Keys: []KeyCount{}, Windows: []Window{}}
	type wkey struct {
		key   string
		start int64
	}
	latest := map[wkey]Window{}
	counts := map[string]*KeyCount{}
	grace := rs.Window.Grace.Milliseconds()
	var maxStart int64
	var err error
	res.Scanned, res.Truncated, err = c.scanTopic(ctx, topic, from, func(rec *kgo.Record) {
		if rec.Timestamp.After(to) {
			return
		}
		win, ok := c.windowOf(ctx, rs, rec)
		if !ok {
			return
		}
		kb, _ := json.Marshal(win.Key)
		k := string(kb)
		if counts[k] == nil {
			counts[k] = &KeyCount{Key: win.Key}
		}
		counts[k].Results++
		if win.WindowStartMs > maxStart {
			maxStart = win.WindowStartMs
		}
		if want != nil && !equal(win.Key, want) {
			return
		}
		latest[wkey{k, win.WindowStartMs}] = win
	})
	if err != nil {
		return nil, err
	}
	for _, kc := range counts {
		res.Keys = append(res.Keys, *kc)
	}
	sort.Slice(res.Keys, func(i, j int) bool { return less(res.Keys[i].Key, res.Keys[j].Key) })
	update := rs.Emit == "update"
	for _, win := range latest {
		win.Final = !update || maxStart >= win.WindowEndMs+grace
		res.Windows = append(res.Windows, win)
	}
	sort.Slice(res.Windows, func(i, j int) bool {
		a, b := res.Windows[i], res.Windows[j]
		if a.WindowStartMs != b.WindowStartMs {
			return a.WindowStartMs < b.WindowStartMs
		}
		return less(a.Key, b.Key)
	})
	return res, nil
}

// windowOf reads one output record of the rollup s: its key fields,
// window and aggregates.
func (c *Console) windowOf(ctx context.Context, s *topology.Spec, rec *kgo.Record) (Window, bool) {
	d := c.decodeRecord(ctx, rec)
	if d.Value == nil {
		return Window{}, false
	}
	win := Window{Values: map[string]*float64{}, Partition: rec.Partition, Offset: rec.Offset}
	keyObj, _ := d.Value["key"].(map[string]any)
	for _, f := range s.Key {
		v, ok := d.Value[f]
		if !ok && keyObj != nil {
			v = keyObj[f]
		}
		win.Key = append(win.Key, text(v))
	}
	var ok1, ok2 bool
	win.WindowStartMs, ok1 = msOf(d.Value["window_start"])
	win.WindowEndMs, ok2 = msOf(d.Value["window_end"])
	if !ok1 || !ok2 {
		return Window{}, false
	}
	for _, a := range s.Aggregates {
		if a.Op == topology.AggTopK {
			win.Values[a.Name] = nil
			if win.Top == nil {
				win.Top = map[string][]TopEntry{}
			}
			win.Top[a.Name] = topEntries(d.Value[a.Name])
			continue
		}
		switch v := d.Value[a.Name].(type) {
		case float64:
			win.Values[a.Name] = &v
		case int64:
			f := float64(v)
			win.Values[a.Name] = &f
		case int32:
			f := float64(v)
			win.Values[a.Name] = &f
		case int:
			f := float64(v)
			win.Values[a.Name] = &f
		case float32:
			f := float64(v)
			win.Values[a.Name] = &f
		default:
			win.Values[a.Name] = nil
		}
	}
	return win, true
}

// topEntries reads a top_k result: a list of {value, count} objects
// (JSON, or Avro records decoded to maps); an empty list for anything
// else.
func topEntries(v any) []TopEntry {
	out := []TopEntry{}
	list, _ := v.([]any)
	for _, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		e := TopEntry{Value: text(m[schema.FieldTopKValue])}
		switch n := m[schema.FieldTopKCount].(type) {
		case float64:
			e.Count = int64(n)
		case int64:
			e.Count = n
		case int32:
			e.Count = int64(n)
		case int:
			e.Count = int64(n)
		}
		out = append(out, e)
	}
	return out
}

func msOf(v any) (int64, bool) {
	switch x := v.(type) {
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		return t.UnixMilli(), err == nil
	case float64:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func less(a, b []string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}
