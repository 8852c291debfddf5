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
// Guarantee. One ApplyRestored call is atomic: its rows and its checkpoint
// are in two SSTables (the checkpoint key sorts apart from the rows, and a
// table spanning both would overlap every other task) ingested by one
// Ingest call, which Pebble applies atomically with one sequence number,
// as one batch. A crash before the ingestion leaves neither (and only
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

// ingestRestored writes keys (changelog window keys, in log order) and
// values (nil: tombstone) and cp as two SSTables and ingests them in one
// atomic ingestion.
func (t *TaskStore) ingestRestored(keys, values [][]byte, cp Checkpoint) error {
	order := sortedLatest(keys)
	fs := t.db.fs
	dir := fs.PathJoin(t.db.dir, ingestDir)
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("restore: create %s: %w", dir, err)
	}
	seq := t.db.ingestSeq.Add(1)
	rows := fs.PathJoin(dir, fmt.Sprintf("%06d-rows.sst", seq))
	cpf := fs.PathJoin(dir, fmt.Sprintf("%06d-checkpoint.sst", seq))
	done := false
	defer func() {
		if !done { // Ingest removes its inputs when it succeeds
			_ = fs.Remove(rows)
			_ = fs.Remove(cpf)
		}
	}()
	full := slices.Clip(t.rowPrefix)
	err := t.writeTable(rows, func(w *sstable.Writer) error {
		for _, i := range order {
			full = append(full[:len(t.rowPrefix)], keys[i]...)
			var err error
			if values[i] == nil {
				err = w.Delete(full)
			} else {
				err = w.Set(full, values[i])
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = t.writeTable(cpf, func(w *sstable.Writer) error { return w.Set(t.cpKey, cp.AppendBinary(nil)) })
	}
	if err != nil {
		return fmt.Errorf("restore: write SSTable: %w", err)
	}
	if err := t.db.pdb.Ingest(context.Background(), []string{rows, cpf}); err != nil {
		return fmt.Errorf("restore: ingest %d records: %w", len(order), classify(t.db.dir, err))
	}
	done = true
	return nil
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
