package processor

// Lookup tables (spec key lookups): a compacted topic kept as a local
// keyed table, joined on a field of each record.
//
// Each table lives in a Pebble store of its own under the pipeline's state
// directory (<state dir>/<app>/lookups/<name>), written by one loader
// goroutine and read by the processing goroutine (Pebble allows both at
// once). Every worker holds the whole table: the loader reads every
// partition of the table's topic, directly (no consumer group, no
// committed offsets), with read_committed isolation. The store has no
// changelog and no checkpoint: it is wiped and rebuilt from the topic
// itself at every start, so it can never miss a deletion the topic's
// compaction has already dropped.
//
// Ordering guarantee (docs/pipeline-spec.md, "Lookup tables"):
//   - bindTables returns only once every table holds every entry written
//     to its topic before the start (up to each partition's end offset,
//     read at start): no record is processed against a table that is
//     behind the topic as it was at start;
//   - after that, the loader applies updates as they arrive, concurrently
//     with processing: a record processed after an update was applied on
//     this worker sees it; one processed before does not. There is no
//     order between the table's topic and the source topics: a record
//     produced just after an update may still be processed before the
//     update reaches this worker (usually milliseconds; longer if the
//     table's topic lags).
//   - replaying old records joins them with the table as it is now, not
//     as it was when they were first processed.
//
// Repartitioned pipelines: the join is made once, in the stateless step
// of the worker that reads the source record; its values travel with the
// record through the repartition topic (header eddy.fields, see
// fields_derived.go), so the aggregating worker counts what the reading worker
// decided, even if the table changed in between.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/topology"
)

// lookupIdleEnd is how long the loader waits without receiving anything
// before it takes a partition whose end offset it has not reached as
// caught up (its last offsets are transaction markers or were removed by
// compaction, which the consumer never sees).
const lookupIdleEnd = 3 * time.Second

// lookupTables are a pipeline's lookup tables, in spec order.
type lookupTables struct {
	tables []*lookupTable
	closed atomic.Bool
}

// lookupTable is one table: its spec, its store and a cache of decoded
// entries in front of it.
//
// The store holds each key's latest value as written to the topic (a JSON
// object). The cache holds decoded entries, and misses, of keys looked up
// recently, up to lookupCacheEntries. One mutex orders the loader's
// writes and the cache: the loader commits a batch and drops its keys
// from the cache under it, and a cache miss reads the store and fills the
// cache under it, so the cache never keeps a value older than the store.
type lookupTable struct {
	spec topology.Lookup
	db   *pebble.DB

	mu       sync.Mutex
	cache    map[string]lookupEntry // nil entry: no such key
	cacheMax int                    // lookupCacheEntries; smaller in tests
	closed   bool                   // db is closed
}

// lookupCacheEntries bounds a table's cache of decoded entries.
const lookupCacheEntries = 100_000

// lookupBlockCache is the size of each table's Pebble block cache.
const lookupBlockCache = 32 << 20

// lookupEntry is a table entry's value: the lookup's fields, decoded.
type lookupEntry map[string]any

// get returns the entry of key, ok false if there is none. Values that
// are not JSON objects count as none.
func (t *lookupTable) get(key string) (lookupEntry, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, false, errors.New("the table is closed")
	}
	if e, ok := t.cache[key]; ok {
		return e, e != nil, nil
	}
	e, err := t.read(key)
	if err != nil {
		return nil, false, err
	}
	if len(t.cache) >= t.cacheMax {
		for k := range t.cache { // drop one, at random
			delete(t.cache, k)
			break
		}
	}
	t.cache[key] = e
	return e, e != nil, nil
}

// read reads and decodes key from the store; nil if it is not there.
func (t *lookupTable) read(key string) (lookupEntry, error) {
	v, closer, err := t.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	var all map[string]any
	if err := json.Unmarshal(v, &all); err != nil || all == nil {
		return nil, nil // apply let it through; not an object: no entry
	}
	e := make(lookupEntry, len(t.spec.Fields))
	for _, f := range t.spec.Fields {
		e[f] = all[f]
	}
	return e, nil
}

// apply writes a batch of table records: a set per JSON object value, a
// delete per null value (tombstone). Values that are not JSON objects
// are skipped and counted in bad (their key keeps its previous value).
func (t *lookupTable) apply(recs []*kgo.Record) (bad int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, errors.New("the table is closed")
	}
	b := t.db.NewBatch()
	defer b.Close()
	for _, r := range recs {
		if r.Value == nil {
			if err := b.Delete(r.Key, nil); err != nil {
				return bad, err
			}
			continue
		}
		if !looksLikeObject(r.Value) {
			bad++
			continue
		}
		if err := b.Set(r.Key, r.Value, nil); err != nil {
			return bad, err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return bad, err
	}
	for _, r := range recs {
		delete(t.cache, string(r.Key))
	}
	return bad, nil
}

// looksLikeObject is a cheap check that v is a JSON object: it starts
// with '{' after white space. Values that pass and are not valid JSON
// read as no entry.
func looksLikeObject(v []byte) bool {
	for _, c := range v {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// lookup joins fields with table i of the spec: on a match, the entry's
// fields (null when the entry lacks one); on a miss, the defaults or a
// lookup_miss RecordError.
func (lt *lookupTables) lookup(i int, fields map[string]any) *RecordError {
	t := lt.tables[i]
	l := &t.spec
	if lt.closed.Load() {
		return &RecordError{Class: ErrLookupMiss, Field: l.On, Err: fmt.Errorf("lookup %q: the table is closed", l.Name)}
	}
	var e lookupEntry
	found := false
	if v := fields[l.On]; v != nil {
		if key, ok := engine.KeyString(v); ok {
			var err error
			if e, found, err = t.get(key); err != nil {
				return &RecordError{Class: ErrLookupMiss, Field: l.On, Err: err}
			}
		}
	}
	if found {
		for _, f := range l.Fields {
			fields[f] = e[f]
		}
		return nil
	}
	if l.OnMiss == topology.OnMissDeadLetter {
		return &RecordError{Class: ErrLookupMiss, Field: l.On,
			Err: fmt.Errorf("lookup %q: no entry of table topic %q has key %s (the value of %s)", l.Name, l.Topic, fmtLookupKey(fields[l.On]), l.On)}
	}
	for _, f := range l.Fields {
		fields[f] = lookupDefault(l.Defaults[f])
	}
	return nil
}

func fmtLookupKey(v any) string {
	if v == nil {
		return "null"
	}
	if s, ok := engine.KeyString(v); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%v", v)
}

// lookupDefault converts a YAML default to the type the same JSON value
// would have in a table entry: numbers are float64.
func lookupDefault(v any) any {
	switch t := v.(type) {
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	}
	return v
}

// bindTables opens the pipeline's lookup tables under dir (the pipeline's
// state directory, locked by the caller; Run calls it after opening the
// window store there, whose repair wipes the directory) and loads them from their topics, returning once each
// is caught up to its topic's end as of now (see the ordering guarantee
// above). A loader goroutine then keeps them up to date until stop is
// called (Run defers it) or ctx ends. base are the pipeline's client
// options (brokers, client id, TLS, SASL). Without lookups it does
// nothing.
func (p *pipeline) bindTables(ctx context.Context, base []kgo.Opt, dir string, log *slog.Logger) (stop func(), err error) {
	if len(p.spec.Lookups) == 0 {
		return func() {}, nil
	}
	lt := &lookupTables{}
	closeAll := func() {
		lt.closed.Store(true)
		for _, t := range lt.tables {
			t.mu.Lock() // no lookup or write is under way, and none starts
			t.closed = true
			_ = t.db.Close()
			t.mu.Unlock()
		}
	}
	topics := make([]string, 0, len(p.spec.Lookups))
	byTopic := make(map[string][]*lookupTable)
	for _, l := range p.spec.Lookups {
		tdir := filepath.Join(dir, "lookups", l.Name)
		// Rebuilt from the topic at every start: no stale entry survives.
		if err := os.RemoveAll(tdir); err != nil {
			closeAll()
			return nil, fmt.Errorf("lookup %q: clear %s: %w", l.Name, tdir, err)
		}
		cache := pebble.NewCache(lookupBlockCache)
		db, err := pebble.Open(tdir, &pebble.Options{Logger: lookupLogger{}, Cache: cache})
		cache.Unref() // the DB holds its own reference
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("lookup %q: open %s: %w", l.Name, tdir, err)
		}
		t := &lookupTable{spec: l, db: db, cache: make(map[string]lookupEntry), cacheMax: lookupCacheEntries}
		lt.tables = append(lt.tables, t)
		if _, seen := byTopic[l.Topic]; !seen {
			topics = append(topics, l.Topic)
		}
		byTopic[l.Topic] = append(byTopic[l.Topic], t)
	}

	opts := append(append([]kgo.Opt(nil), base...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("lookup tables: connect: %w", err)
	}
	fail := func(err error) (func(), error) {
		cl.Close()
		closeAll()
		return nil, err
	}

	// The end of each partition now: the table is loaded up to there
	// before processing starts.
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fail(fmt.Errorf("lookup tables: end offsets of %v (does every lookup topic exist? eddy does not create them): %w", topics, err))
	}
	for _, tp := range topics {
		if len(ends[tp]) == 0 {
			return fail(fmt.Errorf("lookup tables: topic %q does not exist: create it (compacted, cleanup.policy=compact) and write the table to it", tp))
		}
	}
	type tp struct {
		topic string
		part  int32
	}
	pending := make(map[tp]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			pending[tp{o.Topic, o.Partition}] = o.Offset
		}
	})

	began := time.Now()
	var records, bad int64
	poll := func(ctx context.Context) (int, error) {
		fs := cl.PollRecords(ctx, 10000)
		if ctx.Err() != nil {
			return 0, nil
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("lookup table topic %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return 0, ferr
		}
		n := 0
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 || ferr != nil {
				return
			}
			n += len(fp.Records)
			last := fp.Records[len(fp.Records)-1].Offset + 1
			if end, ok := pending[tp{fp.Topic, fp.Partition}]; ok && last >= end {
				delete(pending, tp{fp.Topic, fp.Partition})
			}
			data := fp.Records[:0:0]
			for _, r := range fp.Records {
				if !r.Attrs.IsControl() {
					data = append(data, r)
				}
			}
			if len(data) == 0 {
				return
			}
			for _, t := range byTopic[fp.Topic] {
				b, err := t.apply(data)
				if err != nil {
					ferr = fmt.Errorf("lookup %q: write: %w", t.spec.Name, err)
					return
				}
				bad += int64(b)
			}
			records += int64(len(data))
		})
		return n, ferr
	}

	// Catch up before processing starts.
	lastData := time.Now()
	for len(pending) > 0 {
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		n, err := poll(pctx)
		cancel()
		if err != nil {
			return fail(err)
		}
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if n > 0 {
			lastData = time.Now()
			continue
		}
		if time.Since(lastData) > lookupIdleEnd {
			// Nothing more arrives: the remaining offsets up to the end
			// are transaction markers or records removed by compaction.
			log.Info("lookup tables: no more records before the end offsets read at start; taking them as loaded",
				"partitions_short", len(pending))
			break
		}
	}
	for _, t := range lt.tables {
		// Compacted once loaded: the bulk load left many small files that
		// every read would otherwise visit.
		if err := t.db.Compact(ctx, []byte{}, []byte{0xff, 0xff, 0xff, 0xff}, true); err != nil {
			log.Warn("lookup table: compaction after load failed; lookups are slower", "name", t.spec.Name, "err", err)
		}
		log.Info("lookup table loaded", "name", t.spec.Name, "topic", t.spec.Topic, "entries", countEntries(t.db),
			"took", time.Since(began).Round(time.Millisecond))
	}
	if bad > 0 {
		log.Warn("lookup tables: records whose value is not a JSON object were skipped", "records", bad)
	}
	p.tables = lt

	// Then keep up, until stop or ctx ends.
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for lctx.Err() == nil {
			before := bad
			_, err := poll(lctx)
			if bad > before {
				log.Warn("lookup tables: records whose value is not a JSON object were skipped", "records", bad-before)
			}
			if err != nil {
				log.Warn("lookup tables: reading updates failed; retrying", "err", err)
				select {
				case <-lctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			cl.Close()
			closeAll()
		})
	}, nil
}

// countEntries counts the keys of a table (for logs).
func countEntries(db *pebble.DB) int64 {
	it, err := db.NewIter(nil)
	if err != nil {
		return -1
	}
	defer it.Close()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// lookupLogger drops Pebble's informational messages.
type lookupLogger struct{}

func (lookupLogger) Infof(string, ...any)  {}
func (lookupLogger) Errorf(string, ...any) {}
func (lookupLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
