package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestSettingsMemoryLimitParse(t *testing.T) {
	for in, want := range map[string]int64{
		"0":          0,
		"1073741824": 1 << 30, // the downward API's limits.memory
		"512Mi":      512 << 20,
		"2Gi":        2 << 30,
		"2GiB":       2 << 30,
		"1.5Gi":      3 << 29,
		"1G":         1e9,
		"1GB":        1e9,
		"300M":       300e6,
		"64Ki":       64 << 10,
		" 1Ti ":      1 << 40,
	} {
		got, src, err := memoryLimit(in, "/nonexistent")
		if err != nil || got != want || src != "--memory-limit" {
			t.Errorf("memoryLimit(%q) = %d, %q, %v; want %d", in, got, src, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "1Gb", "-1Gi", "1e400", "Gi"} {
		if _, _, err := memoryLimit(bad, "/nonexistent"); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("memoryLimit(%q): %v, want an error naming --memory-limit", bad, err)
		}
	}
}

func TestSettingsMemoryLimitCgroup(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "memory.max")
	for content, want := range map[string]int64{"536870912\n": 512 << 20, "max\n": 0} {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, setting := range []string{"auto", "AUTO"} {
			got, src, err := memoryLimit(setting, file)
			if err != nil || got != want || !strings.Contains(src, file) {
				t.Errorf("cgroup %q: %d, %q, %v; want %d", content, got, src, err, want)
			}
		}
	}
	if got, _, err := memoryLimit("auto", filepath.Join(dir, "missing")); err != nil || got != 0 {
		t.Errorf("no cgroup file: %d, %v; want unlimited", got, err)
	}
	if err := os.WriteFile(file, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := memoryLimit("auto", file); err == nil {
		t.Error("a cgroup file without a number is accepted")
	}
}

func TestSettingsCacheRows(t *testing.T) {
	for limit, want := range map[int64]int{
		0:        0, // unlimited: the processor's default
		1 << 30:  32768,
		2 << 30:  65536,
		16 << 30: cacheMaxRows,
		16 << 20: cacheMinRows,
	} {
		if got := cacheRowsFor(limit); got != want {
			t.Errorf("cacheRowsFor(%d) = %d, want %d", limit, got, want)
		}
	}
}

// brokerCmd is a command with the broker settings, set from args.
func brokerCmd(t *testing.T, args ...string) *cobra.Command {
	t.Helper()
	cmd := &cobra.Command{Use: "x"}
	addSettings(cmd, brokerSettings...)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestSettingsBrokerOpts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user, pass, empty := write("username", "eddy\n"), write("password", "s3cret"), write("empty", "\n")
	if v, err := readSecretFile("--x", user); err != nil || v != "eddy" {
		t.Errorf("readSecretFile: %q, %v; want the trailing newline dropped", v, err)
	}

	ok := [][]string{
		nil,
		{"--tls", "true"},
		{"--sasl-mechanism", "plain", "--sasl-username-file", user, "--sasl-password-file", pass},
		{"--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username-file", user, "--sasl-password-file", pass},
		{"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username-file", user, "--sasl-password-file", pass, "--tls", "true"},
	}
	for _, args := range ok {
		if _, err := brokerOpts(brokerCmd(t, args...)); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls", "yes please"}, "--tls"},
		{[]string{"--tls-ca-file", filepath.Join(dir, "missing.pem")}, "--tls-ca-file"},
		{[]string{"--tls-ca-file", user}, "no PEM certificate"},
		{[]string{"--sasl-mechanism", "GSSAPI", "--sasl-username-file", user, "--sasl-password-file", pass}, "GSSAPI"},
		{[]string{"--sasl-mechanism", "PLAIN", "--sasl-username-file", user}, "--sasl-password-file"},
		{[]string{"--sasl-username-file", user, "--sasl-password-file", pass}, "--sasl-mechanism"},
		{[]string{"--sasl-mechanism", "PLAIN", "--sasl-username-file", user, "--sasl-password-file", filepath.Join(dir, "nope")}, "--sasl-password-file"},
		{[]string{"--sasl-mechanism", "PLAIN", "--sasl-username-file", empty, "--sasl-password-file", pass}, "empty"},
	} {
		_, err := brokerOpts(brokerCmd(t, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error about %s", c.args, err, c.want)
		}
	}
}
