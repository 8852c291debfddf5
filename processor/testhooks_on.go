//go:build eddytest

package processor

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// loadTestHooks reads the test hooks of a binary built for the
// process-level tests:
//
//	EDDY_TEST_CRASH_AT=point[:k]          exit 137 at point of the k-th commit that flushes state (default 2)
//	EDDY_TEST_PURGE_INTERVAL=duration     Config.PurgeInterval
//	EDDY_TEST_RESTORE_FETCH_BYTES=n       a restorer's fetch size per partition
//	EDDY_TEST_RESTORE_PAUSE=duration      a pause after every fetch of a restore that read records
//	EDDY_TEST_REBALANCE_TIMEOUT=duration  the group member's rebalance timeout
func loadTestHooks() testHooks {
	h := testHooks{crashAt: crashHook{after: 2}}
	if at, k, ok := strings.Cut(os.Getenv("EDDY_TEST_CRASH_AT"), ":"); ok {
		h.crashAt.at = CrashPoint(at)
		if n, err := strconv.Atoi(k); err == nil && n > 0 {
			h.crashAt.after = n
		}
	} else {
		h.crashAt.at = CrashPoint(at)
	}
	if d, err := time.ParseDuration(os.Getenv("EDDY_TEST_PURGE_INTERVAL")); err == nil && d > 0 {
		h.purgeInterval = d
	}
	if n, err := strconv.ParseInt(os.Getenv("EDDY_TEST_RESTORE_FETCH_BYTES"), 10, 32); err == nil && n > 0 {
		h.restoreFetchBytes = int32(n)
	}
	if d, err := time.ParseDuration(os.Getenv("EDDY_TEST_RESTORE_PAUSE")); err == nil && d > 0 {
		h.restorePause = d
	}
	if d, err := time.ParseDuration(os.Getenv("EDDY_TEST_REBALANCE_TIMEOUT")); err == nil && d > 0 {
		h.rebalanceTimeout = d
	}
	return h
}

// crash exits the process at the configured point of the crashAt.after-th
// commit that flushes state (so that there is committed state to keep).
func (h *testHooks) crash(at CrashPoint, flushed bool, log *slog.Logger) {
	if h.crashAt.at != at || !flushed {
		return
	}
	if h.crashAt.count++; h.crashAt.count >= h.crashAt.after {
		log.Error("test crash point reached; exiting", "at", at)
		os.Exit(137)
	}
}

// crashHook is testHooks.crashAt: exit at point at of the after-th commit
// that flushes state (count of them so far).
type crashHook struct {
	at    CrashPoint
	after int
	count int
}
