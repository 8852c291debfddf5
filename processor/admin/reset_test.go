package admin

import (
	"errors"
	"strings"
	"testing"
)

// TestResetErrorSaysHowToFinish: a failed step names what was done before
// it and tells the operator not to run the pipeline until the same reset
// is run again; a failure before any change says nothing changed.
func TestResetErrorSaysHowToFinish(t *testing.T) {
	cause := errors.New("broker gone")
	e := &ResetError{Done: []ResetStep{"check that group \"g\" has no members", "delete g-repartition, g-windows-changelog"},
		Failed: "recreate g-repartition, g-windows-changelog (empty)", Err: cause}
	msg := e.Error()
	for _, want := range []string{"recreate g-repartition", "failed: broker gone", "- delete g-repartition", "Do not start `eddy run`", "run the same `eddy reset` command again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if !errors.Is(e, cause) {
		t.Error("ResetError does not unwrap to its cause")
	}
	first := &ResetError{Failed: "check", Err: &GroupActiveError{Group: "g", State: "Stable", Members: []string{"m-1 (client c, host h)"}}}
	if !strings.Contains(first.Error(), "nothing was changed") || !errors.Is(first, ErrGroupActive) {
		t.Errorf("failure before any change: %s", first.Error())
	}
	if !strings.Contains(first.Err.Error(), "m-1 (client c, host h)") {
		t.Errorf("group error does not name the member: %s", first.Err.Error())
	}
}
