package state

// (One file, though long: the key layout below and every read and write
// of it belong together.)
//
// This file holds the Pebble layout of window stores and the per-task cache.
//
// Key layout (all integers big-endian, so byte order is numeric order):
//
//	window row:  'w' | store name | 0x00 | partition (4) | key length (2) | key | start (8) | end (8)
//	aux entry:   'a' | store name | 0x00 | partition (4) | aux id
//	legacy mark: 'l' | store name | 0x00 | partition (4) | aux id
//	checkpoint:  'c' | store name | 0x00 | partition (4)
//	process id:  'm' | "process-id"
//	layout:      'm' | "layout"
//
// start and end have their sign bit flipped so negative times sort first.
// Each kind of a task shares a prefix (kind | store | 0x00 | partition),
// so wiping a task (a damaged or stale store) is a range delete per kind,
// and a scan of the windows never meets anything else.
//
// Aux entries are state that is not a window row (alert rules' per-key
// state), committed and restored with the windows. Before layout 2 they
// were window rows whose key began with 0x00 (start and end 0): Open moves
// such rows to the aux kind once (migrateLayout), and a legacy mark says
// the changelog may still hold the old form of that id (changelog keys
// below).
//
// Changelog keys. Each changelog record's key says what it holds; the
// first byte tells the kinds apart:
//
//	window row:    key length (2) | key | start (8) | end (8)   (first byte 0x00–0x80: keys are MaxKeyLen at most)
//	aux entry:     0xfe | changelogAuxVersion (1) | aux id
//	commit marker: 0xff 0xff "eddy"                             (checkpoint.go)
//
// The legacy form of an aux entry (eddy before changelog key kinds) is a
// window key whose key is 0x00 | aux id, start and end 0. Restore reads
// it as the aux entry it is and sets the id's legacy mark. Since
// compaction keeps the newest record of each key, an old-form record
// stays in the changelog until a tombstone of the same key follows it, and
// would outlive a later deletion written in the new form: so the first
// flush after ScanAux saw a legacy mark writes, for that id, the old-form
// tombstone and then the entry in the new form, and clears the mark with
// that commit. In log order the tombstone deletes the old value and the
// new-form record sets the current one, whatever of the two compaction
// has kept.
//
// Invariant: Pebble is written only by Commit and Restore, each in one batch
// that carries the task's Checkpoint, and by the one-time layout migration
// in Open, which moves rows between kinds without changing what they say.
// The rows in Pebble therefore always reflect exactly the changelog prefix
// named by the checkpoint.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrCorruptState marks local state that cannot be trusted; the caller
// rebuilds it from the changelog. Only real damage is marked so (Pebble
// reports corruption, or a stored row does not decode): a directory held
// by another process (ErrStateDirLocked), a permission error or a full
// disk is never corruption, and never a reason to wipe anything.
var ErrCorruptState = errors.New("local state is corrupt")

// CorruptError is damaged local state: the directory, the file when Pebble
// names one, and Pebble's reason. errors.Is(err, ErrCorruptState) is true.
type CorruptError struct {
	Dir  string
	File string // "" when the error names no file
	Err  error
}

func (e *CorruptError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("%s: %s: file %s: %v", ErrCorruptState, e.Dir, e.File, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", ErrCorruptState, e.Dir, e.Err)
}

// Is makes errors.Is(err, ErrCorruptState) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorruptState }

func (e *CorruptError) Unwrap() error { return e.Err }

// pebbleFile matches the names of Pebble's files in its error messages.
var pebbleFile = regexp.MustCompile(`\b(\d{6}\.(sst|log|blob)|MANIFEST-\d+|OPTIONS-\d+|CURRENT|marker\.[A-Za-z0-9.-]+)\b`)

// classify marks err as corruption of dir when Pebble says it is one, and
// returns it unchanged otherwise.
func classify(dir string, err error) error {
	if err == nil || !pebble.IsCorruptionError(err) {
		return err
	}
	return &CorruptError{Dir: dir, File: pebbleFile.FindString(err.Error()), Err: err}
}

// MaxKeyLen is the longest grouping key eddy stores (bytes).
const MaxKeyLen = 32 << 10

// DB is the Pebble database that holds every store of one eddy process.
type DB struct {
	pdb  *pebble.DB
	dir  string
	fs   vfs.FS
	opts *pebble.Options // as opened (defaults filled in): SSTables for ingestion are written with them
	// ingestSeq numbers the SSTables restore writes for ingestion
	// (ingest.go), unique within the process.
	ingestSeq atomic.Uint64
	// batchSize is the size of the last committed batch: the next one is
	// made that large (commits are alike), not grown from nothing.
	batchSize atomic.Int64
}

// Open opens (creating if needed) the state database in dir. The caller
// holds dir's lock (LockDir). An error wrapping ErrCorruptState (a
// *CorruptError) means the files are damaged and the directory may be
// wiped and rebuilt from the changelogs; any other error (permissions, a
// lock held by a process that does not use LockDir) must stop the caller
// without touching the directory.
func Open(dir string) (*DB, error) { return openFS(dir, nil) }

// openFS opens the database on fs (nil: the OS's); tests simulate machine
// crashes with a crashable in-memory fs.
func openFS(dir string, fs vfs.FS) (*DB, error) {
	if fs == nil {
		// Pebble's default wraps the OS's FS in a disk-health checker whose
		// goroutine a failed Open leaks; eddy listens to no disk-slow
		// events, so the plain FS loses nothing.
		fs = vfs.Default
	}
	// Larger memtables than Pebble's 4 MiB default: fewer flushes and L0
	// compactions while a restore or a large commit writes many rows.
	//
	// The format is at least FormatVirtualSSTables, which Excise needs
	// (Wipe); Open ratchets an older store up to it.
	opts := &pebble.Options{Logger: quietLogger{}, MemTableSize: 32 << 20, FS: fs, FormatMajorVersion: pebble.FormatVirtualSSTables}
	opts.EnsureDefaults()
	pdb, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open state in %s: %w", dir, classify(dir, err))
	}
	db := &DB{pdb: pdb, dir: dir, fs: fs, opts: opts}
	if err := db.cleanIngestDir(); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = pdb.Close()
		return nil, fmt.Errorf("open state in %s: remove unfinished restore files: %w", dir, err)
	}
	if err := db.migrateLayout(); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("open state in %s: upgrade the layout: %w", dir, err)
	}
	return db, nil
}

var layoutKey = []byte("mlayout")

// layoutVersion is the key layout of the database (see the file comment):
// 2 keeps aux entries under their own kind ('a'); before it (no layout
// key) they were window rows whose key began with 0x00.
const layoutVersion = 2

// migrateLayout brings a database written by an older eddy to
// layoutVersion, once: it moves every legacy aux row out of the window
// rows into an aux entry with a legacy mark (so the next flush also
// tombstones the old form in the changelog), then records the layout,
// synced. The moves go in batches, each moving whole entries (set the new
// keys, delete the old one): a crash part way leaves every entry in one
// place or the other, and the next Open finishes the job. A new or
// current database costs one Get (and, when new, one scan of nothing).
func (db *DB) migrateLayout() error {
	v, closer, err := db.pdb.Get(layoutKey)
	if err == nil {
		ver := 0
		if len(v) == 1 {
			ver = int(v[0])
		}
		_ = closer.Close()
		if ver >= layoutVersion {
			return nil
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return classify(db.dir, err)
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{'w'}, UpperBound: []byte{'w' + 1}})
	if err != nil {
		return classify(db.dir, err)
	}
	defer it.Close()
	b := db.pdb.NewBatch()
	defer func() { _ = b.Close() }()
	var key []byte
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		// 'w' | store | 0x00 | partition (4) | window key
		z := slices.Index(k, 0)
		if z < 0 || len(k) < z+5 {
			continue
		}
		task, wk := k[1:z+5], k[z+5:]
		kind, id := changelogKeyKind(wk)
		if kind != kindLegacyAux {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return classify(db.dir, err)
		}
		key = append(append(append(key[:0], 'a'), task...), id...)
		_ = b.Set(key, v, nil)
		key[0] = 'l'
		_ = b.Set(key, nil, nil)
		_ = b.Delete(k, nil)
		if b.Count() >= 3*1024 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			_ = b.Close()
			b = db.pdb.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return classify(db.dir, err)
	}
	_ = b.Set(layoutKey, []byte{layoutVersion}, nil)
	return b.Commit(pebble.Sync)
}

// quietLogger drops Pebble's informational messages (they are noise in
// eddy's logs); errors still surface through the calls that fail.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// Close closes the database.
func (db *DB) Close() error { return db.pdb.Close() }

var processIDKey = []byte("mprocess-id")

// ProcessID returns the id of the process that owns this state directory,
// creating it (random, written durably) on first use. It outlives restarts
// of the process on the same directory, and only those: a new or rebuilt
// directory gets a new id. Pebble's lock keeps two live processes from
// opening one directory, so two live processes share an id only if a
// directory was copied.
func (db *DB) ProcessID() (string, error) {
	v, closer, err := db.pdb.Get(processIDKey)
	if err == nil {
		defer closer.Close()
		return string(v), nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return "", fmt.Errorf("read process id: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := db.pdb.Set(processIDKey, []byte(id), pebble.Sync); err != nil {
		return "", fmt.Errorf("write process id: %w", err)
	}
	return id, nil
}

// WindowKey identifies one window of one grouping key. Start is inclusive;
// End is exclusive for time windows and the last event time for sessions.
type WindowKey struct {
	Key        string
	Start, End int64
}

func flip(v int64) uint64 { return uint64(v) ^ (1 << 63) }

// AppendBinary appends the changelog encoding of k: key length (2), key,
// start (8), end (8).
func (k WindowKey) AppendBinary(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(k.Key)))
	dst = append(dst, k.Key...)
	dst = binary.BigEndian.AppendUint64(dst, flip(k.Start))
	return binary.BigEndian.AppendUint64(dst, flip(k.End))
}

// CheckWindowKey reports whether b is a window key as AppendBinary
// writes it (the error ParseWindowKey would return), without decoding it.
func CheckWindowKey(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("window key of %d bytes: %w", len(b), ErrCorruptState)
	}
	if n := int(binary.BigEndian.Uint16(b)); len(b) != 2+n+16 {
		return fmt.Errorf("window key of %d bytes, want %d: %w", len(b), 2+n+16, ErrCorruptState)
	}
	return nil
}

// ParseWindowKey decodes what AppendBinary wrote.
func ParseWindowKey(b []byte) (WindowKey, error) {
	if err := CheckWindowKey(b); err != nil {
		return WindowKey{}, err
	}
	n := int(binary.BigEndian.Uint16(b))
	start, end := windowTimes(b, n)
	return WindowKey{Key: string(b[2 : 2+n]), Start: start, End: end}, nil
}

// windowTimes decodes the start and end of window key b (checked by
// CheckWindowKey), whose grouping key has n bytes.
func windowTimes(b []byte, n int) (start, end int64) {
	return int64(binary.BigEndian.Uint64(b[2+n:]) ^ (1 << 63)), int64(binary.BigEndian.Uint64(b[2+n+8:]) ^ (1 << 63))
}

// Changelog key kinds (see the file comment). A window key's first byte
// is the high byte of its key's length: at most 0x80, as a key has
// MaxKeyLen bytes at most. The commit marker's is 0xff (checkpoint.go).
const (
	changelogAuxKind    = 0xfe
	changelogAuxVersion = 1
	// legacyAuxPrefix began the key of a legacy aux row (a window row with
	// start and end 0); grouping keys, JSON arrays, never begin with it.
	legacyAuxPrefix = "\x00"
)

type keyKind uint8

const (
	kindWindow keyKind = iota
	kindAux
	kindLegacyAux
)

// legacyAuxTimes is start and end 0 as a window key encodes them.
var legacyAuxTimes = WindowKey{}.AppendBinary(nil)[2:]

// changelogKeyKind returns the kind of a changelog key (one that
// CheckChangelogKey accepts, or a window row's key in Pebble after its
// task prefix) and, for an aux entry in either form, its id (a subslice
// of b).
func changelogKeyKind(b []byte) (keyKind, []byte) {
	if len(b) >= 2 && b[0] == changelogAuxKind {
		return kindAux, b[2:]
	}
	if len(b) >= 2+1+16 && b[2] == legacyAuxPrefix[0] {
		if n := int(binary.BigEndian.Uint16(b)); n >= 1 && len(b) == 2+n+16 && string(b[2+n:]) == string(legacyAuxTimes) {
			return kindLegacyAux, b[3 : 2+n]
		}
	}
	return kindWindow, nil
}

// appendAuxKey appends the changelog key of aux entry id.
func appendAuxKey(dst []byte, id string) []byte {
	dst = append(dst, changelogAuxKind, changelogAuxVersion)
	return append(dst, id...)
}

// CheckChangelogKey reports whether b is the changelog key of a window
// row or of an aux entry, in the form this eddy writes or the legacy one
// (commit markers are told apart before, by IsMarkerKey). The error
// wraps ErrCorruptState.
func CheckChangelogKey(b []byte) error {
	if len(b) > 0 && b[0] == changelogAuxKind {
		if len(b) < 2 || b[1] != changelogAuxVersion {
			return fmt.Errorf("aux entry key %x: unknown version: %w", b[:min(len(b), 2)], ErrCorruptState)
		}
		return nil
	}
	return CheckWindowKey(b)
}

func taskPrefix(kind byte, store string, partition int32) []byte {
	p := make([]byte, 0, len(store)+6)
	p = append(p, kind)
	p = append(p, store...)
	p = append(p, 0)
	return binary.BigEndian.AppendUint32(p, uint32(partition))
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := slices.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

type cached struct {
	row   *Row // nil when deleted
	dirty bool
	// unlogged: no row of this key is in the changelog or in Pebble, nor
	// on its way there (PutNew made the entry and no Dirty has handed a
	// row of it to a commit since). Deleting such an entry needs no
	// tombstone: it leaves the cache and the pending changes.
	unlogged bool
}

// Change is one pending state change of a task: a row to write, or a
// deletion when Row is nil. Value is the row's encoding (nil for deletion).
// Aux changes (alert state, see PutAux) have Aux set, the aux id in
// AuxID, a zero Key, no Row, and the aux value (nil for deletion).
// AppendKey gives the changelog key of any change.
type Change struct {
	Key   WindowKey
	Row   *Row
	Value []byte
	Aux   bool
	AuxID string
	// legacy: the tombstone of AuxID's legacy changelog key (see the
	// file comment); it clears the id's legacy mark in Pebble.
	legacy bool
	seq    uint64
	c      *cached // the cache entry Dirty read (rows only)
}

// AppendKey appends the changelog key of c to dst: a window key, or an
// aux entry's key (see the file comment).
func (c Change) AppendKey(dst []byte) []byte {
	switch {
	case c.legacy:
		return WindowKey{Key: legacyAuxPrefix + c.AuxID}.AppendBinary(dst)
	case c.Aux:
		return appendAuxKey(dst, c.AuxID)
	}
	return c.Key.AppendBinary(dst)
}

// TaskStore is the window store of one task (one store, one partition).
// It is owned by one goroutine. Updates go to an in-memory cache; Dirty
// lists them for the changelog; Commit writes them to Pebble together with
// the checkpoint once the changelog has them.
type TaskStore struct {
	db           *DB
	specs        []AggSpec
	rowPrefix    []byte
	auxPrefix    []byte
	legacyPrefix []byte
	cpKey        []byte
	cache        map[WindowKey]*cached
	maxCached    int
	// dirty lists the cached rows marked dirty, each once (Dirty sorts
	// it): Dirty reads these instead of scanning the whole cache, and
	// neither it nor markClean looks them up. A row goes in
	// when it turns dirty and out when markClean (or a cache drop) finds
	// it clean. Invariant: an entry whose row is dirty is the one the
	// cache holds for its key (only clean entries leave the cache, but
	// for DropCache, which empties both).
	dirty []dirtyRef
	// dropped counts dirty refs whose entry Delete dropped unlogged since
	// the list was last compacted: Dirty removes them before it sorts.
	dropped int

	aux    map[string]auxEntry // dirty aux entries, until committed
	auxSeq uint64
	// legacy holds the ids whose legacy mark ScanAux found: their old-form
	// changelog keys are tombstoned at the next flush.
	legacy map[string]struct{}

	lastDirty, lastSlab int // sizes of the last Dirty, to size the next
	keyBuf              []byte

	restore restoreRecord // RecordRestored
}

type dirtyRef struct {
	k WindowKey
	c *cached
}

type auxEntry struct {
	v   []byte // nil: delete
	seq uint64
}

// TaskStore returns the store named store for partition. maxCached bounds
// how many clean rows stay in memory after a commit (0 means 100000).
func (db *DB) TaskStore(store string, partition int32, specs []AggSpec, maxCached int) *TaskStore {
	if maxCached <= 0 {
		maxCached = 100000
	}
	return &TaskStore{
		db:           db,
		specs:        specs,
		rowPrefix:    taskPrefix('w', store, partition),
		auxPrefix:    taskPrefix('a', store, partition),
		legacyPrefix: taskPrefix('l', store, partition),
		cpKey:        taskPrefix('c', store, partition),
		cache:        make(map[WindowKey]*cached),
		maxCached:    maxCached,
		aux:          make(map[string]auxEntry),
		legacy:       make(map[string]struct{}),
	}
}

// Aux entries hold state that is not a window row (alert rules' per-key
// state) in the same store, changelog and commit as the windows, as a key
// kind of their own (see the file comment): window scans never see them.
// An aux id is any string. The caller keeps aux values in
// memory: PutAux and DeleteAux only queue them for the next commit, and
// ScanAux reads them back after a restore.

// PutAux queues v as the value of aux id.
func (t *TaskStore) PutAux(id string, v []byte) {
	t.auxSeq++
	t.aux[id] = auxEntry{v: v, seq: t.auxSeq}
}

// DeleteAux queues the deletion of aux id.
func (t *TaskStore) DeleteAux(id string) {
	t.auxSeq++
	t.aux[id] = auxEntry{seq: t.auxSeq}
}

// ScanAux calls fn for every aux entry stored in Pebble for this task,
// in id order; v is the caller's.
//
// It also queues, for every entry restored from the legacy changelog form
// (a legacy mark in Pebble), its rewrite in the new form (unless a change
// of it is queued already) and the tombstone of its old form: the next
// flush writes both and clears the marks (see the file comment).
func (t *TaskStore) ScanAux(fn func(id string, v []byte) error) error {
	if err := t.scanPrefix(t.legacyPrefix, func(id, _ []byte) error {
		t.legacy[string(id)] = struct{}{}
		return nil
	}); err != nil {
		return err
	}
	if err := t.scanPrefix(t.auxPrefix, func(k, v []byte) error {
		id, v := string(k), slices.Clone(v)
		if _, ok := t.legacy[id]; ok {
			if _, queued := t.aux[id]; !queued {
				t.PutAux(id, slices.Clone(v))
			}
		}
		return fn(id, v)
	}); err != nil {
		return err
	}
	for id := range t.legacy {
		if _, queued := t.aux[id]; !queued {
			t.DeleteAux(id) // marked but gone: the new form says so too
		}
	}
	return nil
}

// scanStored calls fn for every row stored in Pebble for this task, in
// key order; v is valid only during the call.
func (t *TaskStore) scanStored(fn func(k WindowKey, v []byte) error) error {
	return t.scanPrefix(t.rowPrefix, func(b, v []byte) error {
		k, err := ParseWindowKey(b)
		if err != nil {
			return err
		}
		return fn(k, v)
	})
}

// scanPrefix calls fn for every key of Pebble with prefix p, in key
// order, with the key after p; k and v are valid only during the call.
func (t *TaskStore) scanPrefix(p []byte, fn func(k, v []byte) error) error {
	it, err := t.db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key()[len(p):], it.Value()); err != nil {
			return err
		}
	}
	return classify(t.db.dir, it.Error())
}

// scratchKey is a row's Pebble key in a buffer reused by the next call:
// for Pebble calls that copy the key (batch Set and Delete).
func (t *TaskStore) scratchKey(k WindowKey) []byte {
	t.keyBuf = k.AppendBinary(append(t.keyBuf[:0], t.rowPrefix...))
	return t.keyBuf
}

// scratchChangeKey is the Pebble key a change writes, in the buffer of
// scratchKey: a row, an aux entry, or (legacy tombstones) a legacy mark.
func (t *TaskStore) scratchChangeKey(ch *Change) []byte {
	switch {
	case ch.legacy:
		t.keyBuf = append(append(t.keyBuf[:0], t.legacyPrefix...), ch.AuxID...)
	case ch.Aux:
		t.keyBuf = append(append(t.keyBuf[:0], t.auxPrefix...), ch.AuxID...)
	default:
		return t.scratchKey(ch.Key)
	}
	return t.keyBuf
}

// Get returns the row of k, or nil if there is none.
func (t *TaskStore) Get(k WindowKey) (*Row, error) {
	if c, ok := t.cache[k]; ok {
		return c.row, nil
	}
	v, closer, err := t.db.pdb.Get(t.scratchKey(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read window %q [%d,%d]: %w", k.Key, k.Start, k.End, classify(t.db.dir, err))
	}
	defer closer.Close()
	r, err := DecodeRow(t.specs, v)
	if err != nil {
		return nil, fmt.Errorf("window %q [%d,%d]: %w: %w", k.Key, k.Start, k.End, ErrCorruptState, err)
	}
	t.cache[k] = &cached{row: r}
	return r, nil
}

// Put records r as the new row of k.
func (t *TaskStore) Put(k WindowKey, r *Row) { t.set(k, r, false) }

// PutNew is Put for a key the caller knows has no stored row: it was never
// committed, or its last committed change deleted it (the engine: a window
// it does not track). If Delete removes k before a commit has taken a row
// of it (Dirty), neither the row nor a tombstone is written: a window that
// opens and closes between two commits costs the changelog nothing. A key
// the cache already holds keeps what the cache knows of it.
func (t *TaskStore) PutNew(k WindowKey, r *Row) { t.set(k, r, true) }

// Delete records the removal of k.
func (t *TaskStore) Delete(k WindowKey) {
	if c, ok := t.cache[k]; ok && c.unlogged {
		// Nothing of k was logged: drop it (its dirty ref is removed by
		// the next Dirty, before it sorts, or by markClean).
		c.row, c.dirty = nil, false
		delete(t.cache, k)
		t.dropped++
		return
	}
	t.set(k, nil, false)
}

// set makes r (nil: deleted) the dirty row of k; fresh (PutNew) marks a
// new cache entry unlogged.
func (t *TaskStore) set(k WindowKey, r *Row, fresh bool) {
	c, ok := t.cache[k]
	if !ok {
		c = &cached{unlogged: fresh}
		t.cache[k] = c
	}
	if !c.dirty {
		t.dirty = append(t.dirty, dirtyRef{k, c})
	}
	c.row, c.dirty = r, true
}

// Dirty returns the pending changes: the rows in the byte order of their
// keys (WindowKey.AppendBinary: the key's length first), then the aux
// changes by id. In that order the changelog is deterministic, a restore
// from scratch often finds it sorted already (ingest.go, sortedLatest),
// and Pebble, which sorts a large commit's batch, finds it sorted: its
// sort then costs a pass. The rows sort as dirtyRefs, not as Changes (a
// third of the bytes to move).
func (t *TaskStore) Dirty() []Change {
	var (
		out  = make([]Change, 0, t.lastDirty)
		slab []byte // the values, encoded one after the other
	)
	if t.dropped > 0 {
		// Windows that opened and closed since the last commit: most of
		// the list when eddy catches up on a backlog. Not sorted, not
		// kept.
		t.dirty = slices.DeleteFunc(t.dirty, func(d dirtyRef) bool { return !d.c.dirty })
		t.dropped = 0
	}
	slices.SortFunc(t.dirty, func(a, b dirtyRef) int { return compareEncoded(a.k, b.k) })
	for _, d := range t.dirty {
		c := d.c // dirty: Delete's drops are compacted away above
		// From here on a row of it may be in the changelog: a later
		// delete must write a tombstone, whether this commit succeeds or
		// not.
		c.unlogged = false
		ch := Change{Key: d.k, Row: c.row, c: c}
		if c.row != nil {
			if slab == nil {
				slab = make([]byte, 0, max(t.lastSlab, 4096))
			}
			// A grown slab leaves earlier values in the old array, intact.
			start := len(slab)
			slab = c.row.AppendBinary(slab)
			ch.Value = slab[start:len(slab):len(slab)]
		}
		out = append(out, ch)
	}
	t.lastDirty, t.lastSlab = len(out), len(slab)
	if len(t.aux) == 0 && len(t.legacy) == 0 {
		return out
	}
	// The aux changes follow the windows, by id; an id's legacy
	// tombstone comes before its new-form change (see the file comment).
	windows := len(out)
	for id, e := range t.aux {
		out = append(out, Change{Aux: true, AuxID: id, Value: e.v, seq: e.seq})
	}
	for id := range t.legacy {
		out = append(out, Change{Aux: true, AuxID: id, legacy: true})
	}
	slices.SortFunc(out[windows:], func(a, b Change) int {
		if c := strings.Compare(a.AuxID, b.AuxID); c != 0 {
			return c
		}
		switch {
		case a.legacy == b.legacy:
			return 0
		case a.legacy:
			return -1
		}
		return 1
	})
	return out
}

// compareEncoded orders window keys as their encodings (AppendBinary)
// compare as bytes, without encoding them.
func compareEncoded(a, b WindowKey) int {
	if len(a.Key) != len(b.Key) {
		return cmp.Compare(len(a.Key), len(b.Key))
	}
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	if a.Start != b.Start {
		return cmp.Compare(a.Start, b.Start)
	}
	return cmp.Compare(a.End, b.End)
}

// Batch collects the commits of several tasks so they reach Pebble in one
// atomic write.
type Batch struct {
	db    *DB
	b     *pebble.Batch
	after []func()
}

// NewBatch starts a batch of task commits.
func (db *DB) NewBatch() *Batch {
	n := int(db.batchSize.Load())
	// Pebble keeps a released batch's buffer for the next one up to a
	// bound (1 MiB by default); commits of a busy worker are larger.
	return &Batch{db: db, b: db.pdb.NewBatch(pebble.WithInitialSizeBytes(n), pebble.WithMaxRetainedSizeBytes(max(1<<20, min(2*n, 32<<20))))}
}

// Commit writes the batch atomically, then marks the tasks' caches clean.
// It does not wait for an fsync: the changelog in Kafka, not Pebble, is
// what must be durable when the commit returns. A process crash loses
// nothing (the write is in the OS's page cache); a machine crash may lose
// the last batches whole, never part of one, and each carries its task's
// checkpoint, so Pebble is then behind the changelog and restore replays
// the tail — the case the commit protocol already handles (a crash
// between the Kafka commit and this write). Not syncing takes a disk
// flush out of every commit, which the processing loop waits for.
func (b *Batch) Commit() error {
	defer b.b.Close()
	b.db.batchSize.Store(int64(b.b.Len()))
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write state batch: %w", err)
	}
	for _, f := range b.after {
		f()
	}
	return nil
}

// Stage adds the task's changes and its new checkpoint to b. They are
// applied when b commits, which happens only after the changelog holds
// the changes (DESIGN.md, "The commit", step 3).
func (t *TaskStore) Stage(b *Batch, changes []Change, cp Checkpoint) {
	for i := range changes {
		ch := &changes[i]
		if ch.Value == nil {
			_ = b.b.Delete(t.scratchChangeKey(ch), nil)
		} else {
			_ = b.b.Set(t.scratchChangeKey(ch), ch.Value, nil)
		}
	}
	_ = b.b.Set(t.cpKey, cp.AppendBinary(nil), nil)
	b.after = append(b.after, func() { t.markClean(changes) })
}

// Commit writes changes and cp to Pebble in one synced batch (Stage and
// Commit for a single task).
func (t *TaskStore) Commit(changes []Change, cp Checkpoint) error {
	b := t.db.NewBatch()
	t.Stage(b, changes, cp)
	return b.Commit()
}

func (t *TaskStore) markClean(changes []Change) {
	for _, ch := range changes {
		if ch.legacy {
			delete(t.legacy, ch.AuxID)
			continue
		}
		if ch.Aux {
			if e, ok := t.aux[ch.AuxID]; ok && e.seq == ch.seq {
				delete(t.aux, ch.AuxID)
			}
			continue
		}
		if c := ch.c; c != nil && c.dirty && c.row == ch.Row {
			// Dirty, so still the cache's entry of ch.Key (see dirty).
			c.dirty = false
			if c.row == nil {
				delete(t.cache, ch.Key)
			}
		}
	}
	// What was not in changes (or changed since) stays dirty.
	t.dirty = slices.DeleteFunc(t.dirty, func(d dirtyRef) bool { return !d.c.dirty })
	t.dropped = 0
	if len(t.cache) > t.maxCached {
		for k, c := range t.cache {
			if !c.dirty {
				delete(t.cache, k)
			}
		}
	}
}

// ApplyRestored writes changelog records (raw bytes, in log order; nil
// value deletes) and cp to Pebble atomically. Used by restore; the cache
// must be empty. Many records (ingestMinRecords or more) are written as
// sorted SSTables and ingested (ingest.go): no WAL, no memtable, no flush,
// and, into an empty key range, no compaction. Fewer go through a batch;
// with sync false that batch is not fsynced: a crash may lose it, and then
// restore starts again from the checkpoint of an earlier batch, which is
// consistent with the rows (each batch carries its own checkpoint). The
// last batch of a restore is synced. An ingestion is always durable.
func (t *TaskStore) ApplyRestored(keys, values [][]byte, cp Checkpoint, sync bool) error {
	if err := t.recordRestored(keys, values); err != nil {
		return err
	}
	if len(keys) >= ingestMinRecords {
		return t.ingestRestored(keys, values, cp)
	}
	b := t.db.pdb.NewBatch()
	defer b.Close()
	var full []byte
	for i, k := range keys {
		kind, id := changelogKeyKind(k)
		switch kind {
		case kindWindow:
			full = append(append(full[:0], t.rowPrefix...), k...)
		case kindLegacyAux:
			// The legacy mark follows the old form's value (set while it
			// holds one, cleared by its tombstone).
			full = append(append(full[:0], t.legacyPrefix...), id...)
			if values[i] == nil {
				_ = b.Delete(full, nil)
			} else {
				_ = b.Set(full, nil, nil)
			}
			fallthrough
		case kindAux:
			full = append(append(full[:0], t.auxPrefix...), id...)
		}
		if values[i] == nil {
			_ = b.Delete(full, nil)
		} else {
			_ = b.Set(full, values[i], nil)
		}
	}
	_ = b.Set(t.cpKey, cp.AppendBinary(nil), nil)
	if !sync {
		return b.Commit(pebble.NoSync)
	}
	return b.Commit(pebble.Sync)
}

// RestoredKey is one window row a restore wrote, or deleted.
type RestoredKey struct {
	WindowKey
	Deleted bool
}

// RecordRestored makes a restore into this store, from its Wipe on (a
// restore from scratch), keep the window keys that ApplyRestored writes,
// in log order, until TakeRestored: the task's index of open windows is
// then built from them (engine.Task.Rebuild) instead of from a scan of
// every row just written to Pebble. A restore that does not wipe the
// store records nothing (its rows are not the store's whole content).
func (t *TaskStore) RecordRestored() {
	t.restore.on, t.restore.whole, t.restore.keys = true, false, nil
}

// TakeRestored returns the window keys recorded since RecordRestored and
// whether they are the store's whole content (the store was wiped first),
// and stops recording.
func (t *TaskStore) TakeRestored() ([]RestoredKey, bool) {
	keys, whole := t.restore.keys, t.restore.whole
	t.restore = restoreRecord{}
	return keys, whole
}

// restoreRecord is what RecordRestored keeps.
type restoreRecord struct {
	on    bool // recording
	whole bool // wiped since recording began: keys is everything
	keys  []RestoredKey
}

// recordRestored appends the window keys of restored records to the
// record (see RecordRestored).
func (t *TaskStore) recordRestored(keys, values [][]byte) error {
	if !t.restore.whole {
		return nil
	}
	if t.restore.keys == nil {
		t.restore.keys = make([]RestoredKey, 0, len(keys))
	}
	// The grouping keys are copied into one string per call, which the
	// windows' keys are parts of: one allocation, not one per window (a
	// restore makes a million). It is freed when the last of them is.
	var all strings.Builder
	total := 0
	for _, k := range keys {
		if kind, _ := changelogKeyKind(k); kind == kindWindow {
			if err := CheckWindowKey(k); err != nil {
				return err
			}
			total += int(binary.BigEndian.Uint16(k))
		}
	}
	all.Grow(total)
	for _, k := range keys {
		if kind, _ := changelogKeyKind(k); kind == kindWindow {
			all.Write(k[2 : 2+int(binary.BigEndian.Uint16(k))])
		}
	}
	s, off := all.String(), 0
	for i, k := range keys {
		if kind, _ := changelogKeyKind(k); kind != kindWindow {
			continue
		}
		n := int(binary.BigEndian.Uint16(k))
		start, end := windowTimes(k, n)
		t.restore.keys = append(t.restore.keys, RestoredKey{
			WindowKey: WindowKey{Key: s[off : off+n], Start: start, End: end},
			Deleted:   values[i] == nil,
		})
		off += n
	}
	return nil
}

// Checkpoint returns the task's checkpoint; ok is false when there is none.
func (t *TaskStore) Checkpoint() (cp Checkpoint, ok bool, err error) {
	v, closer, err := t.db.pdb.Get(t.cpKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, err
	}
	defer closer.Close()
	cp, err = ParseCheckpoint(v)
	if err != nil {
		return Checkpoint{}, false, err
	}
	return cp, true, nil
}

// Wipe removes every row and the checkpoint of the task, and empties the
// cache: the task will be rebuilt from its changelog.
//
// The checkpoint goes first (a synced batch), then the rows are excised:
// Pebble drops the tables (or the parts of tables) in the task's range
// instead of writing a range deletion over them, so the SSTables a restore
// then ingests land in the lowest level, under nothing to compact with. A
// crash between the two leaves rows without a checkpoint, which the next
// restore wipes again.
func (t *TaskStore) Wipe() error {
	t.forget()
	t.restore.whole, t.restore.keys = t.restore.on, nil
	b := t.db.pdb.NewBatch()
	defer b.Close()
	_ = b.Delete(t.cpKey, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	for _, p := range [][]byte{t.rowPrefix, t.auxPrefix, t.legacyPrefix} {
		if err := t.db.pdb.Excise(context.Background(), pebble.KeyRange{Start: p, End: prefixEnd(p)}); err != nil {
			return classify(t.db.dir, err)
		}
	}
	return nil
}

// Scan calls fn for every window stored in Pebble for this task, in key
// order. Used after restore to rebuild the index of open windows.
func (t *TaskStore) Scan(verify bool, fn func(WindowKey) error) error {
	return t.scanStored(func(k WindowKey, v []byte) error {
		if verify {
			if _, err := DecodeRow(t.specs, v); err != nil {
				return fmt.Errorf("window %q: %w: %w", k.Key, ErrCorruptState, err)
			}
		}
		return fn(k)
	})
}

// DropCache forgets every cached row, dirty or not (used on revoke after a
// failed commit: the changelog, not memory, is the truth).
func (t *TaskStore) DropCache() { t.forget() }

// forget empties the cache and the pending changes. The dropped entries are
// marked clean: a Change of an earlier Dirty that still points to one must
// not make markClean touch the cache.
func (t *TaskStore) forget() {
	for _, d := range t.dirty {
		d.c.dirty = false
	}
	clear(t.cache)
	t.dirty = t.dirty[:0]
	t.dropped = 0
	clear(t.aux)
	clear(t.legacy)
}
