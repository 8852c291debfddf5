//go:build !eddytest

package processor

import "testing"

// TestNoTestHooksInProduction: a build without the eddytest tag (every
// build but the process-level tests' binary) ignores the EDDY_TEST_*
// variables: no crash point, no changed setting.
func TestNoTestHooksInProduction(t *testing.T) {
	t.Setenv("EDDY_TEST_CRASH_AT", string(CrashAfterFlush)+":1")
	t.Setenv("EDDY_TEST_PURGE_INTERVAL", "1s")
	t.Setenv("EDDY_TEST_RESTORE_FETCH_BYTES", "1")
	t.Setenv("EDDY_TEST_RESTORE_PAUSE", "1s")
	t.Setenv("EDDY_TEST_REBALANCE_TIMEOUT", "1s")
	if h := loadTestHooks(); h != (testHooks{}) {
		t.Fatalf("test hooks in a build without the eddytest tag: %+v", h)
	}
}
