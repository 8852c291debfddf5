package deploy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/topology"
)

const (
	dashboardFile = "grafana/eddy-dashboard.json"
	alertsFile    = "prometheus/alerts.yaml"
)

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"instance", "job"}

// query is one PromQL expression of the dashboard or the alert rules.
type query struct {
	where string
	expr  string
}

// dashboard is the part of a Grafana dashboard this test reads.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int             `json:"id"`
		Type       string          `json:"type"`
		Title      string          `json:"title"`
		Datasource json.RawMessage `json:"datasource"`
		Targets    []struct {
			Expr       string          `json:"expr"`
			RefID      string          `json:"refId"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

// ruleFile is the Prometheus rule file format.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// grafanaVars replaces Grafana's template variables by values PromQL
// accepts, so the expressions can be parsed.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$instance", ".*")

// dashboardQueries reads the dashboard and returns its PromQL queries,
// checking its structure on the way.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("%s: no title or uid", dashboardFile)
	}
	vars := map[string]bool{}
	var qs []query
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("%s: variable %s: %v", dashboardFile, v.Name, err)
		}
		// label_values(selector, label): the selector is PromQL.
		m := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`).FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", dashboardFile, v.Name, q.Query)
			continue
		}
		qs = append(qs, query{"variable " + v.Name, m[1]})
		if !slices.Contains(targetLabels, m[2]) {
			qs = append(qs, query{"variable " + v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
		}
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d used twice", dashboardFile, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no queries", dashboardFile, p.Title)
		}
		for _, ds := range append([]json.RawMessage{p.Datasource}, func() (r []json.RawMessage) {
			for _, tg := range p.Targets {
				r = append(r, tg.Datasource)
			}
			return r
		}()...) {
			var ref struct{ UID string }
			if err := json.Unmarshal(ds, &ref); err != nil || !vars[strings.Trim(ref.UID, "${}")] {
				t.Errorf("%s: panel %q: datasource %s is not the dashboard's datasource variable", dashboardFile, p.Title, ds)
			}
		}
		for _, tg := range p.Targets {
			for _, v := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[v[1]] && !strings.HasPrefix(v[1], "__") {
					t.Errorf("%s: panel %q uses undefined variable $%s", dashboardFile, p.Title, v[1])
				}
			}
			qs = append(qs, query{fmt.Sprintf("panel %q %s", p.Title, tg.RefID), grafanaVars.Replace(tg.Expr)})
		}
	}
	return qs
}

// alertQueries reads the alert rules and returns their expressions,
// checking the file on the way.
func alertQueries(t *testing.T) []query {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	// Prometheus renders annotations as Go templates with its own
	// functions; these are the ones used here.
	funcs := template.FuncMap{"humanize": fmt.Sprint, "humanizePercentage": fmt.Sprint, "humanizeDuration": fmt.Sprint}
	var qs []query
	names := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" || names[r.Alert] {
				t.Errorf("%s: group %s: a rule without a name, or a name used twice: %q", alertsFile, g.Name, r.Alert)
			}
			names[r.Alert] = true
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("%s: %s: for %q: %v", alertsFile, where, r.For, err)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: %s: severity %q, want warning or critical", alertsFile, where, s)
			}
			for _, k := range []string{"summary", "description"} {
				if r.Annotations[k] == "" {
					t.Errorf("%s: %s: no %s", alertsFile, where, k)
				}
			}
			for k, a := range r.Annotations {
				if _, err := template.New(k).Funcs(funcs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + a); err != nil {
					t.Errorf("%s: %s: annotation %s: %v", alertsFile, where, k, err)
				}
			}
			qs = append(qs, query{where, r.Expr})
		}
	}
	// What the issue asks the rules to catch.
	for _, want := range []string{"EddyConsumerLagGrowing", "EddyRestoreStuck", "EddyDeadLettersRising", "EddyNotReady"} {
		if !names[want] {
			t.Errorf("%s: no alert %s", alertsFile, want)
		}
	}
	return qs
}

// selectorUse is one metric a query reads and the labels it needs.
type selectorUse struct {
	metric string
	labels []string
}

// queryMetrics parses a PromQL expression and returns the metrics it
// selects, with the labels it matches on or groups by.
func queryMetrics(expr string) ([]selectorUse, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var uses []selectorUse
	var walkErr error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			if n.Name == "" {
				walkErr = fmt.Errorf("selector %s has no metric name", n)
				return nil
			}
			u := selectorUse{metric: n.Name}
			for _, m := range n.LabelMatchers {
				if m.Name != model.MetricNameLabel {
					u.labels = append(u.labels, m.Name)
				}
			}
			uses = append(uses, u)
		case *parser.AggregateExpr:
			// Grouping labels must exist on the one metric aggregated.
			var inner []string
			parser.Inspect(n.Expr, func(m parser.Node, _ []parser.Node) error {
				if vs, ok := m.(*parser.VectorSelector); ok && !slices.Contains(inner, vs.Name) {
					inner = append(inner, vs.Name)
				}
				return nil
			})
			if len(inner) == 1 && len(n.Grouping) > 0 {
				uses = append(uses, selectorUse{metric: inner[0], labels: n.Grouping})
			}
		}
		return nil
	})
	return uses, walkErr
}

// TestDashboardAndAlertsParse checks that every query of the dashboard and
// of the alert rules is valid PromQL that selects metrics by name.
func TestDashboardAndAlertsParse(t *testing.T) {
	qs := append(dashboardQueries(t), alertQueries(t)...)
	if len(qs) < 10 {
		t.Fatalf("only %d queries found", len(qs))
	}
	for _, q := range qs {
		uses, err := queryMetrics(q.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
		}
		if len(uses) == 0 {
			t.Errorf("%s: %q selects no metric", q.where, q.expr)
		}
	}
	if _, err := queryMetrics("sum(rate(eddy_records_in_total[5m]"); err == nil {
		t.Error("the PromQL parser accepts an unbalanced expression")
	}
}

// TestDashboardMetricsExist runs eddy exactly as the example Kubernetes
// overlay configures it (its environment, arguments, ConfigMap and a
// Secret of credential files, against a kfake broker with SASL/SCRAM over
// TLS), feeds it with `eddy generate` plus a bad and a late record, and
// then checks:
//   - the probe paths of the manifests answer 200;
//   - the pod name given as EDDY_INSTANCE_ID is the worker's static
//     group membership id;
//   - every metric (and label) the Grafana dashboard and the alert rules
//     use is one eddy exports, as scraped from its /metrics;
//   - SIGTERM ends it cleanly within terminationGracePeriodSeconds.
func TestDashboardMetricsExist(t *testing.T) {
	m := render(t, "kubernetes/overlays/example")
	c := m.eddyContainer(t)
	const podName = "eddy-0"
	ca, serverTLS := selfSignedTLS(t)
	user, pass := "eddy", "s3cret-"+podName

	// The pipeline, as the ConfigMap gives it.
	pl, _ := envValue(c, "EDDY_PIPELINE")
	_, vol := m.mountFor(c, pl.Value)
	spec, err := topology.Parse([]byte(m.configMaps[vol.ConfigMap.Name].Data[filepath.Base(pl.Value)]))
	if err != nil {
		t.Fatal(err)
	}
	input := spec.Source.Topics[0]
	brokers := kafkatest.Kfake(t, kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", user, pass), kfake.SeedTopics(3, input))

	// A directory per volume, standing in for the mounts; the Secret's
	// files are the keys the environment points at.
	mounts := t.TempDir()
	local := func(p string) string {
		for _, vm := range c.VolumeMounts {
			if rest, ok := strings.CutPrefix(p, vm.MountPath); ok && (rest == "" || rest[0] == '/') {
				return filepath.Join(mounts, vm.Name) + rest
			}
		}
		return p
	}
	secretFiles := map[string]string{"username": user, "password": pass + "\n", "ca.crt": ca, "token": "http-token-" + podName}
	for _, v := range m.sts.Spec.Template.Spec.Volumes {
		var vm *corev1.VolumeMount
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].Name == v.Name {
				vm = &c.VolumeMounts[i]
			}
		}
		if vm == nil {
			continue
		}
		dir := local(vm.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case v.ConfigMap != nil:
			for k, data := range m.configMaps[v.ConfigMap.Name].Data {
				writeFile(t, filepath.Join(dir, k), data)
			}
		case v.Secret != nil:
			for k, data := range secretFiles {
				writeFile(t, filepath.Join(dir, k), data)
			}
		}
	}
	for _, vct := range m.sts.Spec.VolumeClaimTemplates {
		for _, vm := range c.VolumeMounts {
			if vm.Name == vct.Name {
				if err := os.MkdirAll(local(vm.MountPath), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	// The environment the kubelet would give the container; only the
	// broker address and the listen address differ (a test cannot take
	// port 8080 or resolve the cluster's DNS).
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = podName
		case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
			q := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(e.ValueFrom.ResourceFieldRef.Resource, "limits."))]
			v = fmt.Sprint(q.Value())
		case e.ValueFrom != nil:
			t.Fatalf("env %s: a source this test does not provide: %+v", e.Name, e.ValueFrom)
		}
		switch e.Name {
		case "EDDY_BROKERS":
			v = strings.Join(brokers, ",")
		case "EDDY_HTTP_ADDR":
			v = "127.0.0.1:0"
		}
		env = append(env, e.Name+"="+local(v))
	}

	w := startEddy(t, env, c.Args...)
	base := "http://" + w.addr
	waitHTTP(t, w, base+c.ReadinessProbe.HTTPGet.Path, 60*time.Second)
	if code := httpStatus(base + c.LivenessProbe.HTTPGet.Path); code != http.StatusOK {
		t.Errorf("liveness probe %s: %d", c.LivenessProbe.HTTPGet.Path, code)
	}

	clientOpts := []kgo.Opt{
		kgo.DialTLSConfig(&tls.Config{RootCAs: certPool(t, ca), MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()),
	}
	checkInstanceID(t, brokers, clientOpts, spec.App, podName)

	// Input: generated events through `eddy generate` with the same
	// broker settings, then a record that cannot be decoded and one far
	// behind stream time.
	gen := exec.Command(eddyBin, "generate", "--topic", input, "--rate", "400", "--duration", "2s")
	gen.Env = env
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("eddy generate: %v\n%s", err, out)
	}
	cl := kafkatest.Client(t, brokers, append(clientOpts, kgo.DefaultProduceTopic(input))...)
	late := fmt.Sprintf(`{"ts": %d, "service": "search", "endpoint": "/api/search", "status": 200, "latency_ms": 12}`,
		time.Now().Add(-30*time.Minute).UnixMilli())
	// The record far behind is late once every task's stream time has
	// passed its window: stream time is the lowest watermark of the input
	// partitions, and one that has had no record yet holds it back until
	// it has been idle for idle_timeout (docs/pipeline-spec.md).
	recent := float64(time.Now().Add(-10 * time.Minute).Unix())
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := scrape(t, base+"/metrics")["eddy_stream_time_seconds"]
		moved := st != nil && len(st.Metric) == 3
		if st != nil {
			for _, m := range st.Metric {
				moved = moved && m.GetGauge().GetValue() >= recent
			}
		}
		if moved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("every task's eddy_stream_time_seconds did not reach the generated events' time within 30s: %v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(`{not json`)}, &kgo.Record{Value: []byte(late)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Scrape until the families that appear with traffic are there.
	exported := map[string][]string{} // metric name -> its labels
	collect(exported, waitFamilies(t, w, base+"/metrics", trafficFamilies))

	// Stop as Kubernetes does: SIGTERM, then SIGKILL after the grace
	// period. The final commit flushes the open windows to the changelog.
	grace := time.Duration(*m.sts.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	stop := func(w *eddyProc) {
		start := time.Now()
		if err := w.stop(grace); err != nil {
			t.Errorf("eddy did not exit cleanly on SIGTERM: %v", err)
		}
		t.Logf("eddy stopped %v after SIGTERM (grace period %v)", time.Since(start).Round(time.Millisecond), grace)
	}
	stop(w)

	// The pod comes back on a new, empty volume: it restores its state
	// from the changelog (the restore metrics appear), then is ready.
	state, _ := envValue(c, "EDDY_STATE_DIR")
	if err := os.RemoveAll(local(state.Value)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(local(state.Value), 0o755); err != nil {
		t.Fatal(err)
	}
	w = startEddy(t, env, c.Args...)
	base = "http://" + w.addr
	waitHTTP(t, w, base+c.ReadinessProbe.HTTPGet.Path, 60*time.Second)
	collect(exported, waitFamilies(t, w, base+"/metrics", restoreFamilies))
	stop(w)

	qs := append(dashboardQueries(t), alertQueries(t)...)
	for _, q := range qs {
		uses, err := queryMetrics(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		for _, u := range uses {
			ls, ok := exported[u.metric]
			if !ok {
				t.Errorf("%s: metric %s is not exported by eddy", q.where, u.metric)
				continue
			}
			for _, l := range u.labels {
				if !slices.Contains(ls, l) && !slices.Contains(targetLabels, l) {
					t.Errorf("%s: metric %s has no label %q (it has %v)", q.where, u.metric, l, ls)
				}
			}
		}
	}
}

// Metric families that appear only once there is traffic of each kind
// (labelled families have no series before).
var (
	trafficFamilies = []string{"eddy_dead_letters_total", "eddy_late_records_total", "eddy_commit_duration_seconds",
		"eddy_consumer_lag_records", "eddy_stream_time_seconds", "eddy_open_windows", "eddy_records_out_total"}
	restoreFamilies = []string{"eddy_restore_records_total", "eddy_restore_records_done", "eddy_restored_records_total"}
)

// waitFamilies scrapes url until every family in want has a series (with
// a non-zero value, for counters and histograms), and returns the last
// scrape.
func waitFamilies(t *testing.T, w *eddyProc, url string, want []string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		fs := scrape(t, url)
		var missing []string
		for _, name := range want {
			f := fs[name]
			var v float64
			for _, m := range f.GetMetric() {
				v += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
			if len(f.GetMetric()) == 0 || (f.GetType() != dto.MetricType_GAUGE && v == 0) {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s, eddy does not export %v; log:\n%s", missing, w.logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// collect adds the metric names of fs, with their labels, to exported.
// A histogram also exports its _bucket (with le), _sum and _count series.
func collect(exported map[string][]string, fs map[string]*dto.MetricFamily) {
	add := func(name string, ls ...string) {
		for _, l := range ls {
			if !slices.Contains(exported[name], l) {
				exported[name] = append(exported[name], l)
			}
		}
		if exported[name] == nil {
			exported[name] = []string{}
		}
	}
	for name, f := range fs {
		var ls []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName())
			}
		}
		add(name, ls...)
		if f.GetType() == dto.MetricType_HISTOGRAM {
			add(name+"_bucket", append(ls, "le")...)
			add(name+"_sum", ls...)
			add(name+"_count", ls...)
		}
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fs, err := tp.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fs
}

// checkInstanceID checks that the worker is in the group with the pod
// name as its static member id.
func checkInstanceID(t *testing.T, brokers []string, opts []kgo.Opt, group, want string) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers, opts...))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		gs, err := adm.DescribeGroups(ctx, group)
		cancel()
		var ids []string
		if err == nil {
			err = gs[group].Err
			for _, m := range gs[group].Members {
				if m.InstanceID != nil {
					ids = append(ids, *m.InstanceID)
				}
			}
		}
		if slices.Contains(ids, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: static member ids %v (%v), want %q (the pod name)", group, ids, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eddyProc is one running eddy.
type eddyProc struct {
	cmd    *exec.Cmd
	addr   string
	done   chan error // the exit status, once
	exited bool       // done was received (by the test goroutine)
	mu     sync.Mutex
	log    strings.Builder
}

func (e *eddyProc) logs() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

// startEddy starts eddy with exactly env and args, and waits for the
// address it serves HTTP on.
func startEddy(t *testing.T, env []string, args ...string) *eddyProc {
	t.Helper()
	e := &eddyProc{cmd: exec.Command(eddyBin, args...), done: make(chan error, 1)}
	e.cmd.Env = env
	stderr, err := e.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	addrRE := regexp.MustCompile(`msg="serving health and metrics" .*addr=(\S+)`)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			e.mu.Lock()
			e.log.WriteString(line + "\n")
			e.mu.Unlock()
			if m := addrRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		e.done <- e.cmd.Wait()
	}()
	t.Cleanup(func() {
		if !e.exited {
			_ = e.cmd.Process.Kill()
			<-e.done
		}
		if t.Failed() {
			t.Logf("eddy log:\n%s", e.logs())
		}
	})
	select {
	case e.addr = <-addrc:
		return e
	case err := <-e.done:
		e.exited = true
		t.Fatalf("eddy exited at start: %v\n%s", err, e.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("eddy did not serve HTTP within 30s:\n%s", e.logs())
	}
	return nil
}

// stop sends SIGTERM and waits up to grace for a clean exit.
func (e *eddyProc) stop(grace time.Duration) error {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.done:
		e.exited = true
		return err
	case <-time.After(grace):
		return fmt.Errorf("still running %v after SIGTERM", grace)
	}
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitHTTP waits for url to answer 200, as a readiness probe would.
func waitHTTP(t *testing.T, e *eddyProc, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for httpStatus(url) != http.StatusOK {
		select {
		case err := <-e.done:
			e.exited = true
			t.Fatalf("eddy exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not 200 within %v", url, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// selfSignedTLS returns a CA certificate (PEM) and a server TLS config for
// 127.0.0.1 signed by it.
func selfSignedTLS(t *testing.T) (caPEM string, server *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "eddy test broker"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return caPEM, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

func certPool(t *testing.T, caPEM string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("bad CA PEM")
	}
	return p
}
