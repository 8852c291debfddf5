// Package state holds eddy's local state and its encodings.
//
// Files:
//   - aggregate.go: Row, the mergeable, compact aggregate state of one key in
//     one window (count, sum, min, max, mean, quantiles via DDSketch,
//     distinct counts via HyperLogLog), and its versioned binary encoding.
package state
