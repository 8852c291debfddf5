package state

// This file holds the ingestion path of restore: changelog records written
// as sorted SSTables and ingested into Pebble.
//
// Why. Restored rows written through batches go through Pebble's WAL and
// memtable, are flushed to L0 and compacted down while the restore runs:
// on one core that was a third of a restore's time (BENCHMARKS.md). An
// ingested SSTable is linked into the LSM as it is, at the lowest level
// where it overlaps nothing: after a Wipe (which excises the task's range)
// a restore's tables land under everything else and are never rewritten.
//
// Guarantee. One ApplyRestored call is atomic: its rows, its aux entries,
// their legacy marks and its checkpoint are in up to four SSTables, one per
// key kind (the kinds' prefixes sort apart, and a table spanning two would
// overlap every other task), ingested by one Ingest call, which Pebble
// applies atomically with one sequence number, as one batch. A crash before the ingestion leaves neither (and only
// stray files in ingestDir, removed at the next Open); after it, both.
// Ingested tables are synced before they are linked, and the ingestion is
// recorded in Pebble's synced manifest, so it is durable when it returns.
//
// Semantics are those of applying the records in log order: within one
// call the last record of a key wins (a tombstone deletes), and the
// ingestion's sequence number is above every earlier write, so it
// overrides rows already stored.

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ingestMinRecords is the fewest records ApplyRestored ingests as
// SSTables; fewer go through a batch (two table files, their syncs and a
// manifest update cost more than a small batch).
const ingestMinRecords = 4096

// ingestDir is the directory, inside the state directory, where restore
// writes SSTables before Pebble links them into the store.
const ingestDir = "ingest"

// cleanIngestDir removes SSTables left by a restore that crashed before
// ingesting them.
func (db *DB) cleanIngestDir() error {
	return db.fs.RemoveAll(db.fs.PathJoin(db.dir, ingestDir))
}

// ingestRestored writes keys (changelog keys, in log order) and values
// (nil: tombstone) and cp as SSTables, one per key kind, and ingests them
// in one atomic ingestion.
func (t *TaskStore) ingestRestored(keys, values [][]byte, cp Checkpoint) error {
	// Aux entries are rare among rows: the rows are keys and values
	// themselves unless there are any.
	rows := restoredKind{prefix: t.rowPrefix, keys: keys, values: values}
	aux := restoredKind{prefix: t.auxPrefix}
	marks := restoredKind{prefix: t.legacyPrefix}
	for i, k := range keys {
		kind, id := changelogKeyKind(k)
		if kind == kindWindow {
			if aux.keys != nil {
				rows.add(k, values[i])
			}
			continue
		}
		if aux.keys == nil { // the first aux entry: split from here on
			rows.keys, rows.values = slices.Clone(keys[:i]), slices.Clone(values[:i])
		}
		if kind == kindLegacyAux {
			var mark []byte // set while the old form holds a value
			if values[i] != nil {
				mark = []byte{}
			}
			marks.add(id, mark)
		}
		aux.add(id, values[i])
	}
	fs := t.db.fs
	dir := fs.PathJoin(t.db.dir, ingestDir)
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("restore: create %s: %w", dir, err)
	}
	seq := t.db.ingestSeq.Add(1)
	var paths []string
	done := false
	defer func() {
		if !done { // Ingest removes its inputs when it succeeds
			for _, p := range paths {
				_ = fs.Remove(p)
			}
		}
	}()
	written := 0
	for _, k := range []struct {
		name string
		recs *restoredKind
	}{{"aux", &aux}, {"legacy", &marks}, {"rows", &rows}} {
		if len(k.recs.keys) == 0 {
			continue
		}
		path := fs.PathJoin(dir, fmt.Sprintf("%06d-%s.sst", seq, k.name))
		paths = append(paths, path)
		n, err := t.writeRestored(path, k.recs)
		if err != nil {
			return fmt.Errorf("restore: write SSTable: %w", err)
		}
		written += n
	}
	cpf := fs.PathJoin(dir, fmt.Sprintf("%06d-checkpoint.sst", seq))
	paths = append(paths, cpf)
	if err := t.writeTable(cpf, func(w *sstable.Writer) error { return w.Set(t.cpKey, cp.AppendBinary(nil)) }); err != nil {
		return fmt.Errorf("restore: write SSTable: %w", err)
	}
	if err := t.db.pdb.Ingest(context.Background(), paths); err != nil {
		return fmt.Errorf("restore: ingest %d records: %w", written, classify(t.db.dir, err))
	}
	done = true
	return nil
}

// restoredKind holds the restored records of one key kind, in log order:
// their keys after the kind's task prefix, and values (nil: tombstone).
type restoredKind struct {
	prefix       []byte
	keys, values [][]byte
}

func (r *restoredKind) add(k, v []byte) {
	r.keys = append(r.keys, k)
	r.values = append(r.values, v)
}

// writeRestored writes r's records as an SSTable at path, the newest of
// each key, and returns how many.
func (t *TaskStore) writeRestored(path string, r *restoredKind) (int, error) {
	order := sortedLatest(r.keys)
	full := slices.Clip(r.prefix)
	err := t.writeTable(path, func(w *sstable.Writer) error {
		for _, i := range order {
			full = append(full[:len(r.prefix)], r.keys[i]...)
			var err error
			if r.values[i] == nil {
				err = w.Delete(full)
			} else {
				err = w.Set(full, r.values[i])
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return len(order), err
}

// writeTable creates an SSTable at path in the format the store reads,
// fills it with fill (keys in increasing order) and syncs it.
func (t *TaskStore) writeTable(path string, fill func(*sstable.Writer) error) error {
	f, err := t.db.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	o := t.db.opts.MakeWriterOptions(0, t.db.pdb.FormatMajorVersion().MaxTableFormat())
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), o)
	if err := fill(w); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close() // flushes, syncs and closes the file
}

// sortedLatest returns the indexes of keys in increasing key order, one per
// distinct key: the last of its occurrences (keys is in log order, so the
// newest value wins). A restore from scratch of a log written in key order
// (each flush's records are sorted) is usually sorted already: that is
// checked first, in one pass.
func sortedLatest(keys [][]byte) []int {
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	sorted := true
	for i := 1; i < len(keys); i++ {
		if bytes.Compare(keys[i-1], keys[i]) >= 0 {
			sorted = false
			break
		}
	}
	if sorted {
		return order
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	out := order[:0]
	for j, i := range order {
		if j+1 < len(order) && bytes.Equal(keys[i], keys[order[j+1]]) {
			continue // a later record of the same key follows
		}
		out = append(out, i)
	}
	return out
}
