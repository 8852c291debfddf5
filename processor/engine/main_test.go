package engine

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any of them leaves a goroutine
// running (STYLE.md: every test checks for leaked goroutines).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNoKafkaImports: the engine is pure. Neither it, its subpackages
// (alert, groupkey), nor anything they import may depend on franz-go (the
// shell, package processor, owns Kafka), so a pipeline can run anywhere:
// previews, a test kit, tasks on every core.
func TestNoKafkaImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath", "./...").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		if strings.HasPrefix(p.ImportPath, "github.com/twmb/franz-go") {
			t.Errorf("processor/engine depends on %s", p.ImportPath)
		}
	}
	if n < 10 {
		t.Fatalf("go list -deps listed %d packages; expected the engine's dependencies", n)
	}
}
