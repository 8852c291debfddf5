package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The commit protocol (commit.go, txn.go) against a model of the broker
// and the store, at every crash point and failure, under both guarantees.
//
// The model has one task reading one input partition. Before the commit
// under test, the committed state is: the changelog holds the rows of
// input [0, 10) and a marker naming input position 10, the group's
// committed offset is 10, and Pebble's checkpoint is the changelog
// position after that marker. The task has since processed input [10, 20)
// and flushed its rows (step 1): the commit under test covers position 20.
// After it ends (or the process dies in it), nextStart computes what a
// restarted worker finds: the changelog it restores (what a read_committed
// restore sees, after the broker aborted any transaction left open), the
// input position that restored state reflects, where the group resumes
// the input, and Pebble.

const (
	beforePos = 10 // input position of the last committed state
	afterPos  = 20 // input position the commit under test covers
)

// logRec is one record of the changelog partition.
type logRec struct {
	marker    bool
	inputNext int64 // a marker's input position
	txn       int   // exactly-once: the transaction that wrote it (0: none)
}

// failure is what goes wrong in a commit of the model.
type failure int

const (
	noFailure        failure = iota
	rowProduceErr            // a changelog row's produce fails (step 1)
	markerProduceErr         // the marker's produce fails (step 2)
	flushErr                 // a flush fails (times out) with nothing acknowledged
	offsetCommitErr          // the offset commit fails (its own request, or the transaction's TxnOffsetCommit)
	txnRevoked               // exactly-once: End aborts (a rebalance revoked partitions)
	fenced                   // exactly-once: a newer incarnation fenced this producer
	storeErr                 // the Pebble batch fails
)

var failureNames = map[failure]string{
	noFailure: "ok", rowProduceErr: "row produce error", markerProduceErr: "marker produce error", flushErr: "flush error",
	offsetCommitErr: "offset commit error", txnRevoked: "transaction abort", fenced: "fenced producer", storeErr: "store write error",
}

type commitModel struct {
	eos     bool
	fail    failure
	crashAt CrashPoint

	changelog []logRec
	pending   []logRec     // produced, not acknowledged
	markers   []*flushWork // waiting for their marker's acknowledgement
	txn       int          // the open transaction
	aborted   map[int]bool // transactions aborted
	committed map[int]bool // transactions committed
	offset    int64        // the group's committed offset
	pebbleCL  int64        // Pebble's checkpoint: the changelog position after its marker
	pebbleIn  int64        // and the input position that marker names
	ended     []string     // the calls of the environment, in order
}

func newCommitModel(eos bool, fail failure, crashAt CrashPoint) *commitModel {
	m := &commitModel{eos: eos, fail: fail, crashAt: crashAt, aborted: map[int]bool{}, committed: map[int]bool{}}
	m.txn = 1
	m.changelog = []logRec{{txn: 1}, {marker: true, inputNext: beforePos, txn: 1}}
	m.committed[1] = true
	m.offset, m.pebbleCL, m.pebbleIn = beforePos, 2, beforePos
	m.txn = 2
	m.produce(logRec{}) // step 1: the rows of input [10, 20)
	m.produce(logRec{})
	return m
}

func (m *commitModel) produce(r logRec) {
	if m.eos {
		r.txn = m.txn
	}
	m.pending = append(m.pending, r)
}

func (m *commitModel) env() *commitEnv {
	return &commitEnv{
		produceMarkers: func(work []*flushWork) {
			m.ended = append(m.ended, "markers")
			for _, w := range work {
				w.marker = -1
				m.produce(logRec{marker: true, inputNext: afterPos})
				m.markers = append(m.markers, w)
			}
		},
		flush: func(context.Context) error {
			m.ended = append(m.ended, "flush")
			pending := m.pending
			m.pending = nil
			switch {
			case m.fail == flushErr:
				return fmt.Errorf("flush producer: %w", context.DeadlineExceeded)
			}
			var err error
			for _, r := range pending {
				if !r.marker && m.fail == rowProduceErr {
					err = fmt.Errorf("produce to changelog: %w", kerr.MessageTooLarge)
					continue
				}
				if r.marker && m.fail == markerProduceErr {
					err = fmt.Errorf("produce commit marker: %w", kerr.NotLeaderForPartition)
					continue
				}
				m.changelog = append(m.changelog, r)
				if r.marker {
					m.markers[0].marker = int64(len(m.changelog) - 1)
					m.markers = m.markers[1:]
				}
			}
			return err
		},
		commitOffsets: func(_ context.Context, offsets offsetMap) error {
			m.ended = append(m.ended, "commit offsets")
			if m.eos {
				panic("exactly-once commits offsets in its transaction")
			}
			if m.fail == offsetCommitErr {
				return fmt.Errorf("commit in/0: %w", kerr.RebalanceInProgress)
			}
			m.offset = offsets["in"][0].Offset
			return nil
		},
		commitOffsetsAsync: func(offsets offsetMap) {
			m.ended = append(m.ended, "commit offsets async")
			if m.eos {
				panic("exactly-once commits offsets in its transaction")
			}
			if m.fail != offsetCommitErr {
				m.offset = offsets["in"][0].Offset
			}
		},
		endTxn: func(_ context.Context, commit bool) (bool, error) {
			m.ended = append(m.ended, fmt.Sprintf("end txn (commit %v)", commit))
			switch {
			case !commit || m.fail == txnRevoked:
				m.aborted[m.txn] = true
				return false, nil
			case m.fail == fenced:
				m.aborted[m.txn] = true // by the newer incarnation's fencing
				return false, kerr.ProducerFenced
			case m.fail == offsetCommitErr:
				return false, fmt.Errorf("txn offset commit: %w", kerr.RequestTimedOut)
			}
			m.committed[m.txn] = true
			m.offset = afterPos
			return true, nil
		},
		abortTxn: func(context.Context) error {
			m.ended = append(m.ended, "abort txn")
			if m.fail == fenced {
				return kerr.ProducerFenced
			}
			m.aborted[m.txn] = true
			return nil
		},
		writeStores: func(work []*flushWork) error {
			m.ended = append(m.ended, "write stores")
			if m.fail == storeErr {
				return errors.New("pebble: disk full")
			}
			for _, w := range work {
				if w.marker < 0 {
					return errors.New("commit marker acknowledged without an offset")
				}
				m.pebbleCL, m.pebbleIn = w.marker+1, afterPos
			}
			return nil
		},
		crash: func(at CrashPoint, flushed bool) bool {
			return flushed && at == m.crashAt
		},
		warn: func(string, ...any) {},
	}
}

// visible says whether a restore (read_committed) reads r, once the
// process is gone: a transaction neither committed nor aborted then is
// aborted by the broker (its timeout, or the next incarnation's fencing).
func (m *commitModel) visible(r logRec) bool {
	return !m.eos || m.committed[r.txn]
}

// start is what a restarted worker finds.
type start struct {
	restored   int64 // input position the restored state reflects
	resume     int64 // the group's committed offset: where the input resumes
	pebble     int64 // input position of Pebble's checkpoint
	pebbleBad  string
	tailMarker bool // restore replays a marker after Pebble's checkpoint
}

func (m *commitModel) nextStart() start {
	s := start{restored: m.pebbleIn, resume: m.offset, pebble: m.pebbleIn}
	// Pebble's checkpoint must name a visible marker of the changelog.
	if m.pebbleCL > int64(len(m.changelog)) {
		s.pebbleBad = fmt.Sprintf("Pebble's checkpoint %d is past the changelog's end %d", m.pebbleCL, len(m.changelog))
	} else if r := m.changelog[m.pebbleCL-1]; !r.marker || !m.visible(r) {
		s.pebbleBad = fmt.Sprintf("Pebble's checkpoint %d follows no visible marker", m.pebbleCL)
	}
	// Restore replays the tail after Pebble's checkpoint up to its last
	// visible marker.
	for _, r := range m.changelog[min(m.pebbleCL, int64(len(m.changelog))):] {
		if r.marker && m.visible(r) {
			s.restored, s.tailMarker = r.inputNext, true
		}
	}
	return s
}

func TestCommitProtocol(t *testing.T) {
	type want struct {
		out                      commitOutcome
		err                      bool
		restored, resume, pebble int64
	}
	committedAll := want{out: committed, restored: afterPos, resume: afterPos, pebble: afterPos}
	nothing := want{err: true, restored: beforePos, resume: beforePos, pebble: beforePos}
	aborted := want{out: txnAborted, restored: beforePos, resume: beforePos, pebble: beforePos}
	cases := []struct {
		eos     bool
		fail    failure
		crashAt CrashPoint
		want    want
		why     string
	}{
		// At-least-once.
		{false, noFailure, "", committedAll, "all four steps"},
		{false, rowProduceErr, "", nothing, "rows without a marker: restore ignores them, the input is processed again"},
		{false, markerProduceErr, "", nothing, "no marker: as a row produce error"},
		{false, flushErr, "", nothing, "nothing acknowledged"},
		{false, offsetCommitErr, "", want{out: offsetsNotCommitted, restored: afterPos, resume: beforePos, pebble: beforePos},
			"the marker is in the changelog: input [10, 20) is read again and skipped as seen; the next commit retries"},
		{false, storeErr, "", want{err: true, restored: afterPos, resume: afterPos, pebble: beforePos},
			"Pebble behind the changelog: restore replays the tail"},
		{false, noFailure, CrashAfterFlush, want{err: true, restored: beforePos, resume: beforePos, pebble: beforePos}, "rows without a marker"},
		{false, noFailure, CrashAfterMarker, want{err: true, restored: afterPos, resume: beforePos, pebble: beforePos},
			"marker before offsets: read again, skipped as seen"},
		{false, noFailure, CrashAfterOffset, want{err: true, restored: afterPos, resume: afterPos, pebble: beforePos},
			"Pebble behind the changelog: restore replays the tail"},
		// Exactly-once.
		{true, noFailure, "", committedAll, "the transaction commits, then Pebble"},
		{true, rowProduceErr, "", aborted, "a record not written: the transaction aborts"},
		{true, markerProduceErr, "", aborted, "a marker not written: the transaction aborts"},
		{true, flushErr, "", aborted, "the flush timed out: the transaction aborts"},
		{true, offsetCommitErr, "", aborted, "End fails: aborted and retried"},
		{true, txnRevoked, "", aborted, "End aborts (partitions revoked)"},
		{true, fenced, "", nothing, "fenced: the worker stops; its transaction is aborted"},
		{true, storeErr, "", want{err: true, restored: afterPos, resume: afterPos, pebble: beforePos},
			"Pebble behind the changelog: restore replays the tail"},
		{true, noFailure, CrashAfterFlush, nothing, "the open transaction is aborted by the broker"},
		{true, noFailure, CrashAfterMarker, nothing, "the open transaction is aborted by the broker"},
		{true, noFailure, CrashAfterOffset, want{err: true, restored: afterPos, resume: afterPos, pebble: beforePos},
			"committed, Pebble behind: restore replays the tail"},
	}
	for _, c := range cases {
		guarantee := "at_least_once"
		if c.eos {
			guarantee = "exactly_once"
		}
		name := guarantee + "/" + failureNames[c.fail]
		if c.crashAt != "" {
			name = guarantee + "/crash " + string(c.crashAt)
		}
		t.Run(name, func(t *testing.T) {
			m := newCommitModel(c.eos, c.fail, c.crashAt)
			pc := &pendingCommit{env: m.env(), eos: c.eos, work: []*flushWork{{marker: -1}}}
			if !c.eos {
				pc.offsets = offsetMap{"in": {0: kgo.EpochOffset{Epoch: -1, Offset: afterPos}}}
			}
			out, err := pc.Commit(context.Background())
			if (err != nil) != c.want.err || (err == nil && out != c.want.out) {
				t.Fatalf("Commit = %v, %v; want outcome %v, error %v (calls: %v)", out, err, c.want.out, c.want.err, m.ended)
			}
			if c.crashAt != "" && !errors.Is(err, errCrashed) {
				t.Fatalf("Commit = %v, want errCrashed", err)
			}
			s := m.nextStart()
			t.Logf("%s: %+v (calls: %v)", c.why, s, m.ended)
			// What the next start finds.
			if s.restored != c.want.restored || s.resume != c.want.resume || s.pebble != c.want.pebble {
				t.Errorf("next start: restored state at input %d, input resumes at %d, Pebble at %d; want %d, %d, %d",
					s.restored, s.resume, s.pebble, c.want.restored, c.want.resume, c.want.pebble)
			}
			// The invariants (commit.go).
			if s.resume > s.restored {
				t.Errorf("offset %d committed past the state in the changelog (input %d): records lost", s.resume, s.restored)
			}
			if s.pebbleBad != "" {
				t.Errorf("Pebble ahead of the changelog: %s", s.pebbleBad)
			}
			if s.pebble > s.restored {
				t.Errorf("Pebble (input %d) ahead of the restored state (input %d)", s.pebble, s.restored)
			}
			if c.eos && s.resume != s.restored {
				t.Errorf("exactly-once: input resumes at %d but the restored state reflects %d", s.resume, s.restored)
			}
			if c.eos && m.aborted[m.txn] {
				if m.committed[m.txn] {
					t.Errorf("transaction both committed and aborted")
				}
				if s.pebble != beforePos {
					t.Errorf("aborted transaction left a trace in Pebble: checkpoint at input %d", s.pebble)
				}
				for i, r := range m.changelog {
					if r.txn == m.txn && m.visible(r) {
						t.Errorf("aborted transaction's record at changelog offset %d is visible", i)
					}
				}
			}
		})
	}
}

// TestCommitProtocolAsync: the processing loop's commits under
// at-least-once do not wait for the offset commit. Whatever happens to it,
// and at every crash point, the invariants hold: no offset committed past
// the state in the changelog, Pebble never ahead of it. A failed
// asynchronous commit leaves Pebble ahead of the committed offset: the
// input is read again from there and skipped as seen.
func TestCommitProtocolAsync(t *testing.T) {
	for _, c := range []struct {
		fail                     failure
		crashAt                  CrashPoint
		err                      bool
		restored, resume, pebble int64
	}{
		{noFailure, "", false, afterPos, afterPos, afterPos},
		{offsetCommitErr, "", false, afterPos, beforePos, afterPos},
		{rowProduceErr, "", true, beforePos, beforePos, beforePos},
		{noFailure, CrashAfterMarker, true, afterPos, beforePos, beforePos},
		{noFailure, CrashAfterOffset, true, afterPos, afterPos, beforePos},
		{offsetCommitErr, CrashAfterOffset, true, afterPos, beforePos, beforePos},
	} {
		name := failureNames[c.fail]
		if c.crashAt != "" {
			name += "/crash " + string(c.crashAt)
		}
		t.Run(name, func(t *testing.T) {
			m := newCommitModel(false, c.fail, c.crashAt)
			pc := &pendingCommit{env: m.env(), work: []*flushWork{{marker: -1}}, async: true,
				offsets: offsetMap{"in": {0: kgo.EpochOffset{Epoch: -1, Offset: afterPos}}}}
			out, err := pc.Commit(context.Background())
			if (err != nil) != c.err || (err == nil && out != committed) {
				t.Fatalf("Commit = %v, %v; want error %v (calls %v)", out, err, c.err, m.ended)
			}
			s := m.nextStart()
			if s.restored != c.restored || s.resume != c.resume || s.pebble != c.pebble {
				t.Errorf("next start %+v; want restored %d, resume %d, Pebble %d (calls %v)", s, c.restored, c.resume, c.pebble, m.ended)
			}
			if s.resume > s.restored || s.pebbleBad != "" || s.pebble > s.restored {
				t.Errorf("invariant broken: %+v", s)
			}
			if slices.Contains(m.ended, "commit offsets") {
				t.Errorf("an asynchronous commit waited for the offset commit: %v", m.ended)
			}
		})
	}
}

// TestOffsetRetry: offsets of a failed asynchronous commit are committed
// by the next commit (the highest per partition), except those of
// partitions no longer owned.
func TestOffsetRetry(t *testing.T) {
	var r offsetRetry
	eo := func(o int64) kgo.EpochOffset { return kgo.EpochOffset{Epoch: -1, Offset: o} }
	r.add(offsetMap{"in": {0: eo(5), 1: eo(7)}, "rep": {2: eo(3)}})
	r.add(offsetMap{"in": {0: eo(4), 3: eo(1)}})
	r.drop(map[string][]int32{"in": {1}})
	next := offsetMap{"in": {0: eo(9)}}
	mergeOffsets(next, r.take())
	want := offsetMap{"in": {0: eo(9), 3: eo(1)}, "rep": {2: eo(3)}}
	if fmt.Sprint(next) != fmt.Sprint(want) {
		t.Errorf("next commit's offsets %v, want %v", next, want)
	}
	if got := r.take(); len(got) != 0 {
		t.Errorf("take after take = %v, want nothing", got)
	}
}

// TestCommitAbort: Abort aborts the open transaction under exactly-once
// (retrying when End fails) and leaves nothing to undo under
// at-least-once.
func TestCommitAbort(t *testing.T) {
	for _, c := range []struct {
		eos  bool
		fail failure
	}{{false, noFailure}, {true, noFailure}, {true, offsetCommitErr}} {
		m := newCommitModel(c.eos, c.fail, "")
		pc := &pendingCommit{env: m.env(), eos: c.eos, work: []*flushWork{{marker: -1}}}
		if err := pc.Abort(context.Background()); err != nil {
			t.Fatalf("eos=%v: Abort: %v", c.eos, err)
		}
		if c.eos != m.aborted[m.txn] {
			t.Errorf("eos=%v: transaction aborted = %v (calls %v)", c.eos, m.aborted[m.txn], m.ended)
		}
		if s := m.nextStart(); s.restored != beforePos || s.resume != beforePos || s.pebble != beforePos {
			t.Errorf("eos=%v: next start after Abort: %+v, want everything at %d", c.eos, s, beforePos)
		}
	}
}
