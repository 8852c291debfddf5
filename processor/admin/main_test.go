package admin

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any of them leaves a goroutine
// running (STYLE.md: every test checks for leaked goroutines).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
