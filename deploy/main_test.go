package deploy

import (
	"github.com/eddy-streams/eddy/internal/testbin"

	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// eddyBin is the eddy binary, built once for every test here: the
// artifacts are checked against what the real binary accepts and serves.
var eddyBin string

// root is the repository root, where docker-compose.yml and go.mod live.
const root = ".."

func TestMain(m *testing.M) { testbin.Main(m, "../cmd/eddy", &eddyBin) }

var (
	settingsOnce sync.Once
	settingsEnv  map[string]string // environment variable -> flag
	settingsErr  error
)

// eddySettings returns the settings eddy documents and accepts, from
// `eddy settings` (the single table flags and environment variables are
// registered from): environment variable -> flag name.
func eddySettings(t testing.TB) map[string]string {
	t.Helper()
	settingsOnce.Do(func() {
		out, err := exec.Command(eddyBin, "settings").Output()
		if err != nil {
			settingsErr = fmt.Errorf("eddy settings: %w", err)
			return
		}
		settingsEnv = map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			cells := strings.Split(sc.Text(), "|")
			if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`--") {
				continue
			}
			flag := strings.Trim(strings.TrimSpace(cells[1]), "`")
			env := strings.Trim(strings.TrimSpace(cells[2]), "`")
			settingsEnv[env] = strings.TrimPrefix(flag, "--")
		}
		if len(settingsEnv) == 0 {
			settingsErr = fmt.Errorf("eddy settings printed no table:\n%s", out)
		}
	})
	if settingsErr != nil {
		t.Fatal(settingsErr)
	}
	return settingsEnv
}

// eddyAccepts reports whether eddy accepts args: the subcommand exists and
// every flag is one it defines, with a value of the right type. It runs
// eddy with --help appended, which parses everything and then prints the
// help instead of running.
func eddyAccepts(args []string) error {
	cmd := exec.Command(eddyBin, append(append([]string(nil), args...), "--help")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("eddy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if len(args) > 0 && !strings.Contains(string(out), "eddy "+args[0]) {
		return fmt.Errorf("eddy %s: %q is not a subcommand (got the root help)", strings.Join(args, " "), args[0])
	}
	return nil
}

// TestDeployEddyAccepts checks the checker: eddyAccepts must reject an
// unknown subcommand, an unknown flag and a badly typed value.
func TestDeployEddyAccepts(t *testing.T) {
	if err := eddyAccepts([]string{"run", "--file", "x.yaml", "--brokers", "k:9092"}); err != nil {
		t.Errorf("a valid command is rejected: %v", err)
	}
	for _, bad := range [][]string{
		{"runn"},
		{"run", "--no-such-flag", "x"},
		{"generate", "--rate", "fast"},
	} {
		if err := eddyAccepts(bad); err == nil {
			t.Errorf("eddy %s is accepted", strings.Join(bad, " "))
		}
	}
	env := eddySettings(t)
	for _, want := range []string{"EDDY_INSTANCE_ID", "EDDY_MEMORY_LIMIT", "EDDY_SASL_PASSWORD_FILE"} {
		if env[want] == "" {
			t.Errorf("eddy settings lacks %s: %v", want, env)
		}
	}
}
