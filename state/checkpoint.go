package state

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// SourcePartition names one partition of one topic.
type SourcePartition struct {
	Topic     string
	Partition int32
}

// CompareSourcePartitions orders partitions by topic, then partition
// number (for slices.SortFunc).
func CompareSourcePartitions(a, b SourcePartition) int {
	if c := strings.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}

// Checkpoint is the position that a task's state reflects. The same
// structure is written in two places: as the value of the commit marker that
// ends every flush in the changelog (ChangelogNext and TopicID zero), and in
// Pebble next to the rows (all fields), in the same batch as the rows.
type Checkpoint struct {
	// TopicID is the Kafka topic id of the changelog the state was built
	// from. A different id means the changelog was deleted and recreated
	// (eddy reset): local state is stale and is rebuilt.
	TopicID [16]byte
	// ChangelogNext is the next changelog offset to restore from.
	ChangelogNext int64
	// InputNext is the next input offset to process: records below it are
	// already in the state, even if the group's committed offset is lower.
	InputNext int64
	// StreamTime is the task's stream time (ms) after the flush.
	StreamTime int64
	// FlushSeq numbers flushes of the task.
	FlushSeq uint64
	// Upstream holds, per upstream source partition, the highest source
	// offset whose record is in the state. Records re-sent to the
	// repartition topic after a crash carry offsets at or below it and are
	// skipped, so at-least-once upstream never double counts here.
	Upstream map[SourcePartition]int64
	// Watermarks holds, per input partition the task's stream time waits
	// for, its watermark: the highest event time (ms) read from it that
	// the state reflects. A task's stream time is the lowest of them
	// (processor/engine/watermark.go).
	Watermarks map[SourcePartition]int64
}

// checkpointVersion 2 added Watermarks; version 1 is still read (without
// them).
const (
	checkpointVersion   = 2
	checkpointVersionV1 = 1
)

// AppendBinary appends the encoding of cp to dst. It is deterministic.
func (cp Checkpoint) AppendBinary(dst []byte) []byte {
	dst = append(dst, checkpointVersion)
	dst = append(dst, cp.TopicID[:]...)
	dst = binary.AppendVarint(dst, cp.ChangelogNext)
	dst = binary.AppendVarint(dst, cp.InputNext)
	dst = binary.AppendVarint(dst, cp.StreamTime)
	dst = binary.AppendUvarint(dst, cp.FlushSeq)
	dst = appendPartitionMap(dst, cp.Upstream)
	dst = appendPartitionMap(dst, cp.Watermarks)
	return dst
}

// appendPartitionMap appends m sorted by partition (deterministic).
func appendPartitionMap(dst []byte, m map[SourcePartition]int64) []byte {
	keys := make([]SourcePartition, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, CompareSourcePartitions)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = binary.AppendUvarint(dst, uint64(len(k.Topic)))
		dst = append(dst, k.Topic...)
		dst = binary.AppendVarint(dst, int64(k.Partition))
		dst = binary.AppendVarint(dst, m[k])
	}
	return dst
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("truncated varint: %w", ErrCorruptState)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("truncated uvarint: %w", ErrCorruptState)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = fmt.Errorf("truncated: want %d bytes, have %d: %w", n, len(d.b), ErrCorruptState)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// ParseCheckpoint decodes what AppendBinary wrote.
func ParseCheckpoint(b []byte) (Checkpoint, error) {
	var cp Checkpoint
	if len(b) < 1 || (b[0] != checkpointVersion && b[0] != checkpointVersionV1) {
		return cp, fmt.Errorf("checkpoint: unknown version: %w", ErrCorruptState)
	}
	d := &decoder{b: b[1:]}
	copy(cp.TopicID[:], d.bytes(16))
	cp.ChangelogNext = d.varint()
	cp.InputNext = d.varint()
	cp.StreamTime = d.varint()
	cp.FlushSeq = d.uvarint()
	cp.Upstream = d.partitionMap("upstream")
	if b[0] >= 2 {
		cp.Watermarks = d.partitionMap("watermark")
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("checkpoint: %d trailing bytes: %w", len(d.b), ErrCorruptState)
	}
	if d.err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %w", d.err)
	}
	return cp, nil
}

// partitionMap decodes what appendPartitionMap wrote (nil when empty).
func (d *decoder) partitionMap(what string) map[SourcePartition]int64 {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > 1<<20 {
		d.err = fmt.Errorf("%d %s partitions: %w", n, what, ErrCorruptState)
		return nil
	}
	if n == 0 {
		return nil
	}
	// Each entry takes at least 3 bytes: never size the map from a count
	// the remaining input cannot hold.
	m := make(map[SourcePartition]int64, min(n, uint64(len(d.b))/3))
	for i := uint64(0); i < n && d.err == nil; i++ {
		topic := string(d.bytes(d.uvarint()))
		p := int32(d.varint())
		m[SourcePartition{topic, p}] = d.varint()
	}
	return m
}

// markerKey is the changelog key of commit markers. No other changelog key
// can equal it (store.go, "Changelog keys"): window keys start with a
// 2-byte length of at most 0x8000, aux entry keys with 0xfe.
const markerKey = "\xff\xffeddy"

// MarkerKey returns the changelog key of commit markers (a new slice each
// call: the key itself cannot be changed).
func MarkerKey() []byte { return []byte(markerKey) }

// IsMarkerKey reports whether a changelog record's key is that of a commit
// marker.
func IsMarkerKey(k []byte) bool { return string(k) == markerKey }
