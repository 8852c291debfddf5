//go:build !eddytest

package processor

import "log/slog"

// loadTestHooks: without the eddytest build tag there are none.
func loadTestHooks() testHooks { return testHooks{} }

// crash does nothing without the eddytest build tag.
func (*testHooks) crash(CrashPoint, bool, *slog.Logger) {}

// crashHook holds nothing in a build without the eddytest tag.
type crashHook struct{}
