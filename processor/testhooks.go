package processor

import (
	"time"

	"github.com/eddy-streams/eddy/state"
)

// testHooks are what the process-level tests (cmd/eddy: crash points,
// restores slower than a rebalance, frequent purges) change in a worker
// started as a separate process. They exist only in a binary built with
// the eddytest build tag (testhooks_on.go reads them from EDDY_TEST_*
// environment variables; internal/testbin builds the test binary so);
// in every other build loadTestHooks returns the zero value, which
// changes nothing, and no environment variable is read.
type testHooks struct {
	// crashAt: the commit point where the process exits with status 137,
	// at the after-th commit that flushes state (read and used only in
	// testhooks_on.go).
	//lint:ignore U1000 used in the eddytest build (testhooks_on.go)
	crashAt crashHook
	// purgeInterval, when > 0, overrides Config.PurgeInterval.
	purgeInterval time.Duration
	// restoreFetchBytes, when > 0, bounds what a restorer fetches per
	// partition and request (default restoreFetchBytes), to make a
	// restore slow.
	restoreFetchBytes int32
	// restorePause, when > 0, is slept after every fetch of a restore
	// that read records, to make a restore slow.
	restorePause time.Duration
	// rebalanceTimeout, when > 0, is the group member's rebalance
	// timeout (franz-go's default otherwise, 60s).
	rebalanceTimeout time.Duration
	// holdFetch keeps one source partition's fetches paused for a while
	// after it is assigned, as a slow first fetch would (in-package tests
	// only, set on the App before Run).
	holdFetch fetchHold
}

// fetchHold is the partition a testHooks.holdFetch delays and for how
// long after its assignment.
type fetchHold struct {
	sp state.SourcePartition
	d  time.Duration
}

// CrashPoint names a place inside the commit where a test can make the
// process die, to prove recovery from each (EDDY_TEST_CRASH_AT=point[:k]
// in a binary built with the eddytest tag).
type CrashPoint string

const (
	CrashAfterFlush  CrashPoint = "after-flush"  // rows produced, no marker
	CrashAfterMarker CrashPoint = "after-marker" // marker produced, offsets not committed
	CrashAfterOffset CrashPoint = "after-offset" // offsets committed, Pebble not written
)
