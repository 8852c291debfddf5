package deploy

import (
	"context"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/topology"
)

// loadCompose loads docker-compose.yml with the Compose Specification's
// reference loader, validating it against the specification's schema.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(abs, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SkipValidation = false
		o.SkipConsistencyCheck = false
		o.ResolvePaths = true
	})
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// flagValue returns the value of --name (or -short) in args.
func flagValue(args []string, name, short string) (string, bool) {
	for i, a := range args {
		for _, f := range []string{"--" + name, "-" + short} {
			if f == "-" {
				continue
			}
			if a == f && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, f+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

func envOf(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// TestComposeFile loads docker-compose.yml and checks that it hangs
// together: eddy's commands and settings are real, the services reach
// each other on the ports they listen on, start in order, and keep their
// data in named volumes.
func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	svc := func(name string) types.ServiceConfig {
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("no service %q (have %v)", name, slices.Sorted(maps.Keys(p.Services)))
		}
		return s
	}
	accepted := eddySettings(t)

	// eddy's services: real subcommands, flags and settings, from the
	// image built here.
	eddySvcs := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		if s.Build != nil && filepath.Base(s.Build.Dockerfile) == "Dockerfile" {
			eddySvcs[name] = s
		}
	}
	if len(eddySvcs) < 2 {
		t.Fatalf("services built from deploy/Dockerfile: %v; want eddy and the generator", slices.Sorted(maps.Keys(eddySvcs)))
	}
	for name, s := range eddySvcs {
		df := s.Build.Dockerfile
		if !filepath.IsAbs(df) {
			df = filepath.Join(s.Build.Context, df)
		}
		if _, err := os.Stat(df); err != nil {
			t.Errorf("service %s: Dockerfile: %v", name, err)
		}
		if abs, _ := filepath.Abs(root); s.Build.Context != abs {
			t.Errorf("service %s: build context %s, want the repository root (the Go module)", name, s.Build.Context)
		}
		if len(s.Entrypoint) > 0 {
			t.Errorf("service %s: entrypoint %v overrides the image's", name, s.Entrypoint)
		}
		if err := eddyAccepts(s.Command); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		for k := range s.Environment {
			if _, ok := accepted[k]; !ok {
				t.Errorf("service %s: environment %s is not an eddy setting", name, k)
			}
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("service %s: want read_only and cap_drop ALL, as on Kubernetes", name)
		}
	}

	// The pipeline eddy runs, and the topic everything agrees on.
	eddy := svc("eddy")
	if len(eddy.Command) == 0 || eddy.Command[0] != "run" {
		t.Fatalf("eddy command %v: want eddy run", eddy.Command)
	}
	plPath, ok := flagValue(eddy.Command, "file", "f")
	if !ok {
		plPath = envOf(eddy, "EDDY_PIPELINE")
	}
	var plFile string
	for _, c := range eddy.Configs {
		if c.Target == plPath {
			plFile = p.Configs[c.Source].File
		}
	}
	if plFile == "" {
		t.Fatalf("eddy's pipeline %q is not a config mounted into the service", plPath)
	}
	plData, err := os.ReadFile(plFile)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := topology.Parse(plData)
	if err != nil {
		t.Fatalf("%s: %v", plFile, err)
	}
	input := spec.Source.Topics[0]
	gen := svc("generator")
	if len(gen.Command) == 0 || gen.Command[0] != "generate" {
		t.Errorf("generator command %v: want eddy generate", gen.Command)
	}
	if topic, _ := flagValue(gen.Command, "topic", ""); topic != input {
		t.Errorf("generator produces to %q, the pipeline reads %q", topic, input)
	}
	initCmd := append(slices.Clone(svc("kafka-init").Entrypoint), svc("kafka-init").Command...)
	if topic, _ := flagValue(initCmd, "topic", ""); topic != input || !slices.Contains(initCmd, "--create") {
		t.Errorf("kafka-init %v does not create the pipeline's input topic %q", initCmd, input)
	}

	// Kafka: the address eddy and the generator use is one the broker
	// listens on and advertises.
	kafka := svc("kafka")
	advertised := strings.Split(envOf(kafka, "KAFKA_ADVERTISED_LISTENERS"), ",")
	listeners := envOf(kafka, "KAFKA_LISTENERS")
	for _, name := range []string{"eddy", "generator"} {
		b := envOf(svc(name), "EDDY_BROKERS")
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			t.Errorf("%s: EDDY_BROKERS %q: %v", name, b, err)
			continue
		}
		if _, ok := p.Services[host]; !ok && kafka.Hostname != host {
			t.Errorf("%s: EDDY_BROKERS host %q is no service", name, host)
		}
		var found bool
		for _, l := range advertised {
			if strings.HasSuffix(l, "://"+b) {
				found = true
				lname, _, _ := strings.Cut(l, "://")
				if !strings.Contains(listeners, lname+"://:"+port) {
					t.Errorf("kafka advertises %s but does not listen on it (%s)", l, listeners)
				}
			}
		}
		if !found {
			t.Errorf("%s: EDDY_BROKERS %s is not among kafka's advertised listeners %v", name, b, advertised)
		}
	}
	for _, l := range advertised {
		if strings.Contains(l, "localhost:") {
			_, port, _ := net.SplitHostPort(strings.SplitN(l, "://", 2)[1])
			if !publishes(kafka, port, port) {
				t.Errorf("kafka advertises %s to the host but does not publish port %s", l, port)
			}
		}
	}

	// The schema registry: eddy reaches it on a port it serves, once it is
	// healthy.
	if reg := envOf(eddy, "EDDY_REGISTRY_URL"); reg != "" {
		u, err := url.Parse(reg)
		if err != nil {
			t.Fatalf("eddy EDDY_REGISTRY_URL %q: %v", reg, err)
		}
		rs, ok := p.Services[u.Hostname()]
		if !ok {
			t.Errorf("EDDY_REGISTRY_URL %s: no service %s", reg, u.Hostname())
		} else if !publishes(rs, "", u.Port()) {
			t.Errorf("EDDY_REGISTRY_URL %s: %s does not serve port %s", reg, u.Hostname(), u.Port())
		}
		if d, ok := eddy.DependsOn[u.Hostname()]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("eddy does not wait for a healthy %s", u.Hostname())
		}
	}

	// eddy's HTTP port: published, and scraped by Prometheus.
	_, httpPort, err := net.SplitHostPort(envOf(eddy, "EDDY_HTTP_ADDR"))
	if err != nil {
		t.Fatalf("eddy EDDY_HTTP_ADDR: %v", err)
	}
	if !publishes(eddy, "", httpPort) {
		t.Errorf("eddy does not publish its HTTP port %s", httpPort)
	}
	prom := svc("prometheus")
	promCfgPath, _ := flagValue(prom.Command, "config.file", "")
	promCfg := struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}{}
	mounted := map[string]string{} // target in the container -> file
	for _, c := range prom.Configs {
		mounted[c.Target] = p.Configs[c.Source].File
	}
	data, err := os.ReadFile(mounted[promCfgPath])
	if err != nil {
		t.Fatalf("prometheus --config.file %q is not a mounted config: %v", promCfgPath, err)
	}
	if err := yaml.Unmarshal(data, &promCfg); err != nil {
		t.Fatal(err)
	}
	var scrapesEddy bool
	for _, sc := range promCfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				if target == "eddy:"+httpPort && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics") {
					scrapesEddy = true
				}
			}
		}
	}
	if !scrapesEddy {
		t.Errorf("Prometheus does not scrape eddy:%s/metrics", httpPort)
	}
	for _, rf := range promCfg.RuleFiles {
		f, ok := mounted[rf]
		if !ok {
			t.Errorf("Prometheus rule file %s is not mounted", rf)
		} else if want, _ := filepath.Abs("prometheus/alerts.yaml"); f != want {
			t.Errorf("Prometheus rule file %s is %s, want eddy's alert rules", rf, f)
		}
	}
	if len(promCfg.RuleFiles) == 0 {
		t.Error("Prometheus loads no alert rules")
	}

	// Start order: each dependency's condition can be met.
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) == 0 {
					t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if target.Restart != "" && target.Restart != types.RestartPolicyNo {
					t.Errorf("%s waits for %s to complete, which restarts (%s)", name, dep, target.Restart)
				}
			}
		}
	}
	for _, name := range []string{"kafka", "schema-registry", "prometheus"} {
		if hc := svc(name).HealthCheck; hc == nil || len(hc.Test) == 0 {
			t.Errorf("%s has no health check", name)
		}
	}
	for _, name := range []string{"eddy", "generator"} {
		if d, ok := svc(name).DependsOn["kafka-init"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s does not wait for the input topic (kafka-init)", name)
		}
	}
	if d, ok := svc("kafka-init").DependsOn["kafka"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Error("kafka-init does not wait for a healthy kafka")
	}

	// Published ports are distinct.
	seen := map[string]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if prev, dup := seen[port.Published]; dup && port.Published != "" {
				t.Errorf("host port %s published by %s and %s", port.Published, prev, name)
			}
			seen[port.Published] = name
		}
	}

	// Data in named volumes: Kafka's log directory and eddy's state.
	checkVolume := func(s types.ServiceConfig, vol, dir string) {
		if _, ok := p.Volumes[vol]; !ok {
			t.Errorf("named volume %s is not declared", vol)
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Source == vol && v.Target == dir {
				return
			}
		}
		t.Errorf("%s: %s is not on the named volume %s", s.Name, dir, vol)
	}
	checkVolume(kafka, "kafka-data", envOf(kafka, "KAFKA_LOG_DIRS"))
	checkVolume(eddy, "eddy-state", envOf(eddy, "EDDY_STATE_DIR"))
	if envOf(eddy, "EDDY_INSTANCE_ID") == "" {
		t.Error("eddy has no EDDY_INSTANCE_ID: a restart would rebalance")
	}
}

// publishes reports whether s publishes container port target (on host
// port published, when given).
func publishes(s types.ServiceConfig, published, target string) bool {
	for _, p := range s.Ports {
		if target == "" || target == strconv.FormatUint(uint64(p.Target), 10) {
			if published == "" || p.Published == published {
				return true
			}
		}
	}
	return false
}

// TestComposeValidation checks the checker: the loader must reject a key
// the Compose Specification does not define.
func TestComposeValidation(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "compose.yml")
	if err := os.WriteFile(f, []byte("services:\n  x:\n    image: busybox\n    restart_policy: always\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: f}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("x", true) })
	if err == nil || !strings.Contains(err.Error(), "restart_policy") {
		t.Fatalf("a misspelt key loads: %v", err)
	}
}

// TestAlertmanagerConfig checks the compose file's Alertmanager config with
// Alertmanager's own checker (amtool, from Debian's prometheus-alertmanager,
// which scripts/test.sh installs).
func TestAlertmanagerConfig(t *testing.T) {
	amtool, err := exec.LookPath("amtool")
	if err != nil && testing.Short() {
		t.Skip("amtool not installed; scripts/test.sh (full mode) installs it")
	}
	if err != nil {
		t.Fatal("amtool is not installed: scripts/test.sh installs it (apt-get install prometheus-alertmanager)")
	}
	out, err := exec.Command(amtool, "check-config", "alertmanager/alertmanager.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
}
