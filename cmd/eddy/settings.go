package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// setting is one worker setting: its flag, environment variable, default
// and meaning. This table is the single source of truth: flags are
// registered from it, environment variables override defaults through it,
// and `eddy settings` prints it for docs/settings.md.
type setting struct {
	flag, env, def, doc string
	short               string
}

var settings = []setting{
	{flag: "file", short: "f", env: "EDDY_PIPELINE", def: "", doc: "Pipeline spec file (YAML)."},
	{flag: "brokers", env: "EDDY_BROKERS", def: "localhost:9092", doc: "Kafka bootstrap brokers, comma separated."},
	{flag: "state-dir", env: "EDDY_STATE_DIR", def: "./eddy-state", doc: "Directory for local state (Pebble). A cache of the changelog: safe to delete."},
	{flag: "http-addr", env: "EDDY_HTTP_ADDR", def: "127.0.0.1:8080", doc: "Address for /healthz, /readyz and /metrics. Port 0 picks a free port."},
	{flag: "instance-id", env: "EDDY_INSTANCE_ID", def: "", doc: "Static group membership id (e.g. the pod name). Restarts within the session timeout keep this worker's partitions."},
	{flag: "session-timeout", env: "EDDY_SESSION_TIMEOUT", def: "45s", doc: "Consumer group session timeout: how long a silent worker keeps its partitions."},
	{flag: "log-level", env: "EDDY_LOG_LEVEL", def: "info", doc: "debug, info, warn or error."},
}

func settingFor(flag string) setting {
	for _, s := range settings {
		if s.flag == flag {
			return s
		}
	}
	panic("eddy: no setting " + flag)
}

// addSettings registers the named settings as flags on cmd, with defaults
// taken from their environment variables when set.
func addSettings(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		s := settingFor(n)
		def := s.def
		if v, ok := os.LookupEnv(s.env); ok {
			def = v
		}
		usage := fmt.Sprintf("%s (env %s)", s.doc, s.env)
		cmd.Flags().StringP(s.flag, s.short, def, usage)
	}
}

func flagString(cmd *cobra.Command, name string) string {
	v, err := cmd.Flags().GetString(name)
	if err != nil {
		panic(err)
	}
	return v
}

func writeSettingsTable(w io.Writer) {
	fmt.Fprintln(w, "| flag | environment variable | default | meaning |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(w, "| `--%s` | `%s` | `%s` | %s |\n", s.flag, s.env, def, strings.ReplaceAll(s.doc, "|", "\\|"))
	}
}
