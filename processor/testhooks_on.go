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
	h := testHooks{crashAfter: 2}
	if at, k, ok := strings.Cut(os.Getenv("EDDY_TEST_CRASH_AT"), ":"); ok {
		h.crashAt = CrashPoint(at)
		if n, err := strconv.Atoi(k); err == nil && n > 0 {
			h.crashAfter = n
		}
	} else {
		h.crashAt = CrashPoint(at)
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

// crash exits the process at the configured point of the crashAfter-th
// commit that flushes state (so that there is committed state to keep).
func (h *testHooks) crash(at CrashPoint, flushed bool, log *slog.Logger) {
	if h.crashAt != at || !flushed {
		return
	}
	if h.crashCount++; h.crashCount >= h.crashAfter {
		log.Error("test crash point reached; exiting", "at", at)
		os.Exit(137)
	}
}
