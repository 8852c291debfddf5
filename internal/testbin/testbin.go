// Package testbin builds the eddy binary once for the tests of a package
// that run it as a separate process (the way users and manifests do).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// Main builds the eddy command in cmdDir (relative to the test's package
// directory) into a temporary directory, with -race when the tests are
// built with it, stores its path in *bin, runs the tests, checks for
// leaked goroutines, removes the binary and exits. tags are build tags of
// the binary, such as "eddytest" for the test hooks of processor
// (processor/testhooks.go: crash points and the like), which no other
// build contains.
func Main(m *testing.M, cmdDir string, bin *string, tags ...string) {
	dir, err := os.MkdirTemp("", "eddy-bin")
	if err != nil {
		panic(err)
	}
	*bin = filepath.Join(dir, "eddy")
	args := []string{"build", "-o", *bin}
	if race {
		args = append(args, "-race")
	}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	out, err := exec.Command("go", append(args, cmdDir)...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build eddy: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
