package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// setting is one worker setting: its flag, environment variable, default
// and meaning. This table is the single source of truth: flags are
// registered from it, environment variables override defaults through it,
// and `eddy settings` prints it for docs/operations.md.
type setting struct {
	flag, env, def, doc string
	short               string
}

var settings = []setting{
	{flag: "file", short: "f", env: "EDDY_PIPELINE", def: "", doc: "Pipeline spec file (YAML)."},
	{flag: "brokers", env: "EDDY_BROKERS", def: "localhost:9092", doc: "Kafka bootstrap brokers, comma separated."},
	{flag: "state-dir", env: "EDDY_STATE_DIR", def: "./eddy-state", doc: "Directory for local state (Pebble). A cache of the changelog: safe to delete."},
	{flag: "http-addr", env: "EDDY_HTTP_ADDR", def: "127.0.0.1:8080", doc: "Address of the web console (/console/, API under /api/v1/), /healthz, /readyz and /metrics. Port 0 picks a free port. Beyond loopback it needs --http-token-file or --http-insecure (docs/security.md)."},
	{flag: "http-advertise", env: "EDDY_HTTP_ADVERTISE", def: "", doc: "Console base URL at which the other workers reach this one (e.g. http://$(POD_IP):8080 in Kubernetes); a state query sent to any worker is forwarded to the owner of the key at this URL. Default: the scheme and the bound --http-addr."},
	{flag: "http-tls-cert-file", env: "EDDY_HTTP_TLS_CERT_FILE", def: "", doc: "PEM certificate (chain) for serving --http-addr over HTTPS, with --http-tls-key-file; e.g. a cert-manager Secret's tls.crt. Read again when the file changes."},
	{flag: "http-tls-key-file", env: "EDDY_HTTP_TLS_KEY_FILE", def: "", doc: "PEM private key of --http-tls-cert-file (a Secret's tls.key)."},
	{flag: "http-token-file", env: "EDDY_HTTP_TOKEN_FILE", def: "", doc: "File holding the bearer token every HTTP request must carry (Authorization: Bearer TOKEN), except /healthz and /readyz. Read again when the file changes. Needed when --http-addr binds beyond loopback."},
	{flag: "http-insecure", env: "EDDY_HTTP_INSECURE", def: "false", doc: "Serve --http-addr beyond loopback without --http-token-file (true or false). Anyone who reaches the port can then read metrics, state and (with the console) raw records."},
	{flag: "http-metrics-open", env: "EDDY_HTTP_METRICS_OPEN", def: "false", doc: "Serve /metrics without the token (true or false), for Prometheus scrapers inside the cluster."},
	{flag: "instance-id", env: "EDDY_INSTANCE_ID", def: "", doc: "Static group membership id (e.g. the pod name). Restarts within the session timeout keep this worker's partitions."},
	{flag: "session-timeout", env: "EDDY_SESSION_TIMEOUT", def: "45s", doc: "Consumer group session timeout: how long a silent worker keeps its partitions."},
	{flag: "log-level", env: "EDDY_LOG_LEVEL", def: "info", doc: "debug, info, warn or error."},
	{flag: "sasl-mechanism", env: "EDDY_SASL_MECHANISM", def: "", doc: "SASL mechanism for the brokers: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with --sasl-username-file and --sasl-password-file), or OAUTHBEARER (with --sasl-token-file); none when empty."},
	{flag: "sasl-username-file", env: "EDDY_SASL_USERNAME_FILE", def: "", doc: "File holding the SASL username, e.g. a key of a mounted Kubernetes Secret. Read at start and at every authentication, so rotated credentials are picked up."},
	{flag: "sasl-password-file", env: "EDDY_SASL_PASSWORD_FILE", def: "", doc: "File holding the SASL password, read like --sasl-username-file."},
	{flag: "sasl-token-file", env: "EDDY_SASL_TOKEN_FILE", def: "", doc: "File holding the OAuth bearer token (a JWT) for --sasl-mechanism OAUTHBEARER. Read at every authentication, so whatever renews the token only rewrites the file."},
	{flag: "tls", env: "EDDY_TLS", def: "false", doc: "Connect to the brokers over TLS (true or false), verifying them against the system roots or --tls-ca-file."},
	{flag: "tls-ca-file", env: "EDDY_TLS_CA_FILE", def: "", doc: "PEM file of the CA certificates that sign the brokers' certificates. Setting it turns TLS on."},
	{flag: "tls-cert-file", env: "EDDY_TLS_CERT_FILE", def: "", doc: "PEM client certificate for brokers that require mTLS, with --tls-key-file; e.g. a cert-manager Secret's tls.crt. Setting it turns TLS on. Read again when the file changes, so a renewed certificate is used at the next connection."},
	{flag: "tls-key-file", env: "EDDY_TLS_KEY_FILE", def: "", doc: "PEM private key of --tls-cert-file (a Secret's tls.key)."},
	{flag: "memory-limit", env: "EDDY_MEMORY_LIMIT", def: "auto", doc: "Memory this worker may use: bytes, or with a unit (512Mi, 2Gi, 1G); auto reads the container's cgroup v2 memory.max; 0 means unlimited. Sizes the row cache of each task (a quarter of the limit for eight tasks, at 1 KiB a row, between 1000 and 100000 rows) and Go's soft memory limit (90% of it, unless GOMEMLIMIT is set)."},
	{flag: "parallelism", env: "EDDY_PARALLELISM", def: "auto", doc: "Goroutines that process this worker's aggregation tasks at once, each task on one of them at a time: a positive number, or auto for GOMAXPROCS (the CPUs Go uses: the container's CPU limit, else the machine's cores). The repartition stage and the commit's waits on Kafka stay on one goroutine (see Parallel tasks below)."},
	{flag: "registry-url", env: "EDDY_REGISTRY_URL", def: "", doc: "Schema registry URL (Confluent-compatible, e.g. http://localhost:8081). eddy run needs it for pipelines with source.format or output.format avro; eddy schema and eddy produce default to http://localhost:8081. The same flag on every subcommand (--registry is an older alias)."},
	{flag: "registry-username-file", env: "EDDY_REGISTRY_USERNAME_FILE", def: "", doc: "File holding the schema registry's basic-auth user (a Confluent Cloud API key), with --registry-password-file. Read at every request, so rotated credentials are picked up."},
	{flag: "registry-password-file", env: "EDDY_REGISTRY_PASSWORD_FILE", def: "", doc: "File holding the schema registry's basic-auth password (the API secret)."},
	{flag: "registry-token-file", env: "EDDY_REGISTRY_TOKEN_FILE", def: "", doc: "File holding a bearer token for the schema registry (instead of basic auth). Read at every request."},
	{flag: "registry-ca-file", env: "EDDY_REGISTRY_CA_FILE", def: "", doc: "PEM file of the CA certificates that sign the schema registry's certificate (default: the system roots)."},
	{flag: "registry-cert-file", env: "EDDY_REGISTRY_CERT_FILE", def: "", doc: "PEM client certificate for a registry that requires mTLS, with --registry-key-file. Read again when the file changes."},
	{flag: "registry-key-file", env: "EDDY_REGISTRY_KEY_FILE", def: "", doc: "PEM private key of --registry-cert-file."},
	{flag: "registry-users-file", env: "EDDY_REGISTRY_USERS_FILE", def: "", doc: "eddy registry: file of users allowed in, one name:bcrypt-hash[:read|write] a line (htpasswd -nbB prints name:hash); read is the default role. With it every request needs a user (or the --http-token-file token, which may write). Read again when the file changes."},
	{flag: "runbooks", env: "EDDY_RUNBOOKS", def: "", doc: "eddy run: a directory of runbooks (*.md) its console serves at /console/runbook.html, each pipeline block run as an in-memory preview (docs/runbooks.md); none when empty."},
	{flag: "alertmanager-url", env: "EDDY_ALERTMANAGER_URL", def: "", doc: "Prometheus Alertmanager base URL (e.g. http://alertmanager:9093). When set, the pipeline's alert transitions are also posted to its v2 API, and firing alerts re-sent every 30s (see docs/alerting.md)."},
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

// flagAliases maps an older flag name to the setting's one name. The old
// name still parses (scripts keep working) but is in no help text, so each
// setting has one name across subcommands: `eddy schema list --registry-url
// URL` works like `eddy run --registry-url URL`.
var flagAliases = map[string]string{
	"registry": "registry-url", // eddy schema and eddy produce, before 0.x
}

// normalizeFlag is the root command's flag normalization: it resolves
// flagAliases on every subcommand.
func normalizeFlag(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if n, ok := flagAliases[name]; ok {
		name = n
	}
	return pflag.NormalizedName(name)
}

// addSettingDefault registers one setting on fs with a subcommand's own
// default (overridden, like every setting, by its environment variable):
// eddy schema and eddy produce talk to a registry at localhost:8081 unless
// told otherwise, eddy run needs one only for Avro pipelines.
func addSettingDefault(fs *pflag.FlagSet, name, def string) {
	s := settingFor(name)
	if v := os.Getenv(s.env); v != "" {
		def = v
	}
	fs.StringP(s.flag, s.short, def, fmt.Sprintf("%s (env %s)", s.doc, s.env))
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
