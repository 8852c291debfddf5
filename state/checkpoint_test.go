package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"testing"
)

// checkpointsEqual compares checkpoints, a nil Upstream equal to an empty
// one (ParseCheckpoint returns nil for none).
func checkpointsEqual(a, b Checkpoint) bool {
	return a.TopicID == b.TopicID && a.ChangelogNext == b.ChangelogNext && a.InputNext == b.InputNext &&
		a.StreamTime == b.StreamTime && a.FlushSeq == b.FlushSeq && maps.Equal(a.Upstream, b.Upstream) &&
		maps.Equal(a.Watermarks, b.Watermarks)
}

var testCheckpoints = []Checkpoint{
	{},
	{Upstream: map[SourcePartition]int64{}},
	{TopicID: [16]byte{0xde, 0xad, 15: 0xff}, ChangelogNext: 1, InputNext: 2, StreamTime: 1_748_865_600_000, FlushSeq: 3},
	{ChangelogNext: -1, InputNext: math.MinInt64, StreamTime: math.MinInt64, FlushSeq: math.MaxUint64},
	{ChangelogNext: math.MaxInt64, InputNext: math.MaxInt64, StreamTime: math.MaxInt64,
		Upstream: map[SourcePartition]int64{
			{"requests", 0}: 0, {"requests", 1}: 99, {"requests", 10}: 5, {"requests", -1}: -1,
			{"", 0}: 1, {"requests-eu", 2}: math.MaxInt64, {"ünïcode", math.MaxInt32}: 3, {"a", math.MinInt32}: 4,
		}},
	{StreamTime: 5, Upstream: map[SourcePartition]int64{{"requests", 0}: 7},
		Watermarks: map[SourcePartition]int64{{"requests", 0}: 5, {"requests", 1}: 9, {"orders", 0}: 0}},
}

// TestCheckpointV1: a checkpoint written before watermarks were kept
// (version 1) still reads, without them.
func TestCheckpointV1(t *testing.T) {
	want := Checkpoint{TopicID: [16]byte{1}, ChangelogNext: 10, InputNext: 20, StreamTime: 30, FlushSeq: 4,
		Upstream: map[SourcePartition]int64{{"requests", 2}: 19}}
	b := []byte{1}
	b = append(b, want.TopicID[:]...)
	b = binary.AppendVarint(b, 10)
	b = binary.AppendVarint(b, 20)
	b = binary.AppendVarint(b, 30)
	b = binary.AppendUvarint(b, 4)
	b = binary.AppendUvarint(b, 1)
	b = binary.AppendUvarint(b, uint64(len("requests")))
	b = append(b, "requests"...)
	b = binary.AppendVarint(b, 2)
	b = binary.AppendVarint(b, 19)
	got, err := ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if !checkpointsEqual(got, want) {
		t.Errorf("version 1 checkpoint read as %+v, want %+v", got, want)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	for _, cp := range testCheckpoints {
		b := cp.AppendBinary(nil)
		got, err := ParseCheckpoint(b)
		if err != nil {
			t.Errorf("%+v: %v", cp, err)
			continue
		}
		if !checkpointsEqual(got, cp) {
			t.Errorf("round trip of %+v gave %+v", cp, got)
		}
		if b2 := cp.AppendBinary([]byte{9, 9}); !bytes.Equal(b2[2:], b) {
			t.Errorf("%+v: AppendBinary to a non-empty slice encodes differently", cp)
		}
	}
}

// TestCheckpointDeterministic: the same checkpoint gives the same bytes,
// whatever order its Upstream map was built in (Go randomizes iteration).
func TestCheckpointDeterministic(t *testing.T) {
	want := testCheckpoints[len(testCheckpoints)-1]
	ref := want.AppendBinary(nil)
	keys := make([]SourcePartition, 0, len(want.Upstream))
	for k := range want.Upstream {
		keys = append(keys, k)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for range 50 {
		rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		cp := want
		cp.Upstream = make(map[SourcePartition]int64)
		for _, k := range keys {
			cp.Upstream[k] = want.Upstream[k]
		}
		if b := cp.AppendBinary(nil); !bytes.Equal(b, ref) {
			t.Fatalf("insertion order %v encodes as %x, want %x", keys, b, ref)
		}
	}
}

// TestCheckpointCorrupt: every truncation, trailing garbage, a wrong
// version and absurd counts are errors wrapping ErrCorruptState.
func TestCheckpointCorrupt(t *testing.T) {
	for _, cp := range testCheckpoints {
		b := cp.AppendBinary(nil)
		for n := range len(b) {
			if got, err := ParseCheckpoint(b[:n]); !errors.Is(err, ErrCorruptState) {
				t.Errorf("%d of %d bytes: %+v, %v; want ErrCorruptState", n, len(b), got, err)
			}
		}
		if _, err := ParseCheckpoint(append(b, 0)); !errors.Is(err, ErrCorruptState) {
			t.Errorf("trailing byte: %v; want ErrCorruptState", err)
		}
		bad := append([]byte(nil), b...)
		bad[0] = checkpointVersion + 1
		if _, err := ParseCheckpoint(bad); !errors.Is(err, ErrCorruptState) {
			t.Errorf("version %d: %v; want ErrCorruptState", bad[0], err)
		}
	}
	// Counts and lengths that claim more than the input holds.
	head := Checkpoint{}.AppendBinary(nil)
	head = head[:len(head)-1] // drop the upstream count (0)
	for _, tail := range [][]byte{
		binary.AppendUvarint(nil, 1<<20+1),                                 // too many partitions
		binary.AppendUvarint(nil, 1<<20),                                   // many, none present
		append(binary.AppendUvarint(nil, 1), 0xff, 0xff, 1),                // topic longer than the input
		binary.AppendUvarint(binary.AppendUvarint(nil, 1), math.MaxUint64), // absurd topic length
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // uvarint overflow
	} {
		in := append(append([]byte(nil), head...), tail...)
		if got, err := ParseCheckpoint(in); !errors.Is(err, ErrCorruptState) {
			t.Errorf("%x: %+v, %v; want ErrCorruptState", in, got, err)
		}
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	for _, cp := range testCheckpoints {
		b := cp.AppendBinary(nil)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{checkpointVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := ParseCheckpoint(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("%x: error %v does not wrap ErrCorruptState", b, err)
			}
			return
		}
		// What parses re-encodes to something that parses to the same
		// checkpoint (the bytes may differ: varints need not be minimal).
		again, err := ParseCheckpoint(cp.AppendBinary(nil))
		if err != nil || !checkpointsEqual(again, cp) {
			t.Fatalf("%x parses to %+v; its re-encoding parses to %+v, %v", b, cp, again, err)
		}
	})
}
