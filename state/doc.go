// Package state holds eddy's local state and its encodings.
//
// Files:
//   - aggregate.go: Row, the mergeable, compact aggregate state of one key in
//     one window (count, sum, min, max, mean, quantiles via DDSketch,
//     distinct counts via HyperLogLog), and its versioned binary encoding.
//   - store.go: DB and TaskStore, a task's rows and aux entries (alert
//     state, a key kind of its own) in Pebble behind a write-back cache;
//     the key layouts in Pebble and in the changelog, and the migration
//     of the legacy form of aux entries.
//   - ingest.go: restored changelog records written as sorted SSTables
//     and ingested into Pebble with their checkpoint, atomically.
//   - checkpoint.go: Checkpoint, the position a task's state reflects, and
//     MarkerKey, the changelog key of commit markers.
//   - lock.go: one process per state directory.
//
// Restoring a store from its changelog topic reads Kafka, so it lives in
// the subpackage state/changelog: package state itself imports nothing
// from franz-go, and the pure engine (processor/engine) can use it.
package state
