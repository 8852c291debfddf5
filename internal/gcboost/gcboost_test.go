package gcboost

import (
	"runtime/debug"
	"testing"
)

// gcPercent reads GOGC without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestHoldNests: GOGC is Percent while any hold lasts, and what it was
// before the first once the last is released, whatever the order of
// releases; releasing twice counts once.
func TestHoldNests(t *testing.T) {
	t.Setenv("GOGC", "") // as unset: Hold acts
	before := debug.SetGCPercent(137)
	defer debug.SetGCPercent(before)
	a := Hold()
	b := Hold()
	if p := gcPercent(); p != Percent {
		t.Fatalf("held: GOGC %d, want %d", p, Percent)
	}
	a()
	a()
	if p := gcPercent(); p != Percent {
		t.Fatalf("one of two released (twice): GOGC %d, want %d", p, Percent)
	}
	b()
	if p := gcPercent(); p != 137 {
		t.Fatalf("all released: GOGC %d, want 137 back", p)
	}
}

// TestHoldLeavesOperatorsGOGC: with GOGC in the environment, Hold changes
// nothing.
func TestHoldLeavesOperatorsGOGC(t *testing.T) {
	t.Setenv("GOGC", "150")
	before := debug.SetGCPercent(150)
	defer debug.SetGCPercent(before)
	release := Hold()
	if p := gcPercent(); p != 150 {
		t.Errorf("GOGC set by the operator: %d during a hold, want 150", p)
	}
	release()
}
