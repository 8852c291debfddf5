package changelog

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/eddy-streams/eddy/state"
)

// TestMain fails the package's tests if any of them leaves a goroutine
// running (STYLE.md: every test checks for leaked goroutines).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testSpecs are the aggregates of the rows in these tests.
var testSpecs = []state.AggSpec{{Op: state.OpCount}, {Op: state.OpSum}, {Op: state.OpMax}, {Op: state.OpQuantile, Quantile: 0.99}, {Op: state.OpDistinct}}
