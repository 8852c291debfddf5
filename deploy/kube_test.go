package deploy

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/eddy-streams/eddy/topology"
)

// The kustomizations users apply.
var kustomizations = []string{"kubernetes/base", "kubernetes/overlays/example"}

// manifests is one rendered kustomization, decoded into the Kubernetes
// API types.
type manifests struct {
	dir        string
	sts        *appsv1.StatefulSet
	services   []*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	pdbs       []*policyv1.PodDisruptionBudget
	namespaces []*corev1.Namespace
	accounts   []*corev1.ServiceAccount
}

// strictDecoder decodes YAML or JSON into the registered API types and
// fails on unknown or duplicate fields.
func strictDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// render runs kustomize (the same library kubectl apply -k uses) on dir
// and decodes every object strictly.
func render(t *testing.T, dir string) *manifests {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{dir: dir, configMaps: map[string]*corev1.ConfigMap{}}
	dec := strictDecoder()
	for i, doc := range bytes.Split(out, []byte("\n---\n")) {
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: object %d does not decode strictly into the Kubernetes API types: %v\n%s", dir, i, err, doc)
		}
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			if m.sts != nil {
				t.Fatalf("%s: two StatefulSets", dir)
			}
			m.sts = o
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		case *corev1.ServiceAccount:
			m.accounts = append(m.accounts, o)
		default:
			t.Fatalf("%s: unexpected object %v", dir, gvk)
		}
	}
	if m.sts == nil {
		t.Fatalf("%s: no StatefulSet", dir)
	}
	return m
}

// eddyContainer returns the eddy container of the pod template.
func (m *manifests) eddyContainer(t *testing.T) *corev1.Container {
	t.Helper()
	for i, c := range m.sts.Spec.Template.Spec.Containers {
		if c.Name == "eddy" {
			return &m.sts.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatalf("%s: no container named eddy", m.dir)
	return nil
}

func envValue(c *corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// mountFor returns the volume mount and volume under which path lies.
func (m *manifests) mountFor(c *corev1.Container, p string) (*corev1.VolumeMount, *corev1.Volume) {
	for i, vm := range c.VolumeMounts {
		if p == vm.MountPath || strings.HasPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			for j, v := range m.sts.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name {
					return &c.VolumeMounts[i], &m.sts.Spec.Template.Spec.Volumes[j]
				}
			}
			return &c.VolumeMounts[i], nil
		}
	}
	return nil, nil
}

// TestKubeStrictDecoding checks the checker: an unknown field must fail.
func TestKubeStrictDecoding(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n      - name: x\n        imagePullPolicyy: Always\n")
	if _, _, err := strictDecoder().Decode(doc, nil, nil); err == nil || !strings.Contains(err.Error(), "imagePullPolicyy") {
		t.Fatalf("a misspelt field decodes: %v", err)
	}
}

// TestKubeManifests renders the base and the example overlay and checks
// what eddy needs from them, and what production needs from eddy's pods.
func TestKubeManifests(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(path.Base(dir), func(t *testing.T) {
			m := render(t, dir)
			checkWorkload(t, m)
			checkSecurity(t, m)
			checkSettings(t, m)
		})
	}
}

// checkWorkload: the StatefulSet, its headless Service, its disruption
// budget, its probes, scrape annotations and resources.
func checkWorkload(t *testing.T, m *manifests) {
	sts, c := m.sts, m.eddyContainer(t)
	pod := sts.Spec.Template
	podLabels := labels.Set(pod.Labels)
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("StatefulSet selector %v does not match the pod labels %v (%v)", sts.Spec.Selector, pod.Labels, err)
	}

	var headless *corev1.Service
	for _, s := range m.services {
		if s.Name == sts.Spec.ServiceName {
			headless = s
		}
	}
	switch {
	case headless == nil:
		t.Errorf("StatefulSet serviceName %q: no such Service", sts.Spec.ServiceName)
	case headless.Spec.ClusterIP != corev1.ClusterIPNone:
		t.Errorf("Service %s: clusterIP %q, want None (headless)", headless.Name, headless.Spec.ClusterIP)
	case !labels.SelectorFromSet(headless.Spec.Selector).Matches(podLabels) || len(headless.Spec.Selector) == 0:
		t.Errorf("Service %s: selector %v does not select the pods %v", headless.Name, headless.Spec.Selector, pod.Labels)
	}

	if len(m.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(m.pdbs))
	}
	pdb := m.pdbs[0]
	if s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !s.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector does not match the pods: %v", err)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", pdb.Spec.MaxUnavailable)
	}

	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: want Parallel (workers do not wait for each other)", sts.Spec.PodManagementPolicy)
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < 60 {
		t.Errorf("terminationGracePeriodSeconds %v: want at least 60, for the final flush and commit", g)
	}

	// The HTTP port: one named port, the one eddy listens on, used by
	// both probes, the Service and the scrape annotations.
	httpAddr, _ := envValue(c, "EDDY_HTTP_ADDR")
	_, portStr, err := net.SplitHostPort(httpAddr.Value)
	if err != nil {
		t.Fatalf("EDDY_HTTP_ADDR %q: %v", httpAddr.Value, err)
	}
	port, _ := strconv.Atoi(portStr)
	if len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != port {
		t.Fatalf("container ports %v: want one, the EDDY_HTTP_ADDR port %d", c.Ports, port)
	}
	portName := c.Ports[0].Name
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe of %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s path %q, want %q", p.name, g.Path, p.path)
		}
		if g.Port.String() != portName && g.Port.IntValue() != port {
			t.Errorf("%s port %s is not eddy's HTTP port (%s, %d)", p.name, g.Port.String(), portName, port)
		}
	}
	if headless != nil && (len(headless.Spec.Ports) != 1 || headless.Spec.Ports[0].TargetPort.String() != portName) {
		t.Errorf("Service %s ports %v: want one, targeting %q", headless.Name, headless.Spec.Ports, portName)
	}
	ann := pod.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != portStr || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v: want prometheus.io/scrape true, port %s, path /metrics", ann, portStr)
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	if req, lim := c.Resources.Requests.Memory(), c.Resources.Limits.Memory(); req.Cmp(*lim) != 0 {
		t.Errorf("memory request %s != limit %s: a pod using its limit could be evicted under node pressure", req, lim)
	}

	// State: one claim per pod, mounted at the state directory.
	var claim *corev1.PersistentVolumeClaim
	for i, vct := range sts.Spec.VolumeClaimTemplates {
		if vct.Name == "state" {
			claim = &sts.Spec.VolumeClaimTemplates[i]
		}
	}
	if claim == nil {
		t.Fatal("no volumeClaimTemplate named state")
	}
	if !slices.Equal(claim.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("state claim access modes %v, want [ReadWriteOnce]", claim.Spec.AccessModes)
	}
	if _, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		t.Error("state claim requests no storage")
	}
	stateDir, _ := envValue(c, "EDDY_STATE_DIR")
	if vm, _ := m.mountFor(c, stateDir.Value); vm == nil || vm.Name != "state" || vm.MountPath != stateDir.Value {
		t.Errorf("EDDY_STATE_DIR %q is not the mount of the state claim (%v)", stateDir.Value, vm)
	}
}

// checkSecurity: the pod meets the "restricted" Pod Security Standard, as
// the admission controller itself evaluates it, plus a read-only root
// filesystem with writable volumes only where eddy writes.
func checkSecurity(t *testing.T, m *manifests) {
	pod := m.sts.Spec.Template
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := policy.AggregateCheckResults(eval.EvaluatePod(psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}, &pod.ObjectMeta, &pod.Spec))
	if !res.Allowed {
		t.Errorf("the pod does not meet the restricted Pod Security Standard: %s: %s", res.ForbiddenReason(), res.ForbiddenDetail())
	}

	c := m.eddyContainer(t)
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatal("pod or container securityContext missing")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod runAsNonRoot/runAsUser: %v %v", psc.RunAsNonRoot, psc.RunAsUser)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile %v, want RuntimeDefault", psc.SeccompProfile)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container capabilities %v: want drop [ALL], add none", sc.Capabilities)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container readOnlyRootFilesystem is not true")
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: eddy does not use the Kubernetes API")
	}
	// The image's user owns the state directory it creates; fsGroup makes
	// the volumes writable and the secrets readable for it.
	_, stages := parseDockerfile(t, "Dockerfile")
	var imageUser string
	for _, in := range stages[len(stages)-1].ins {
		if in.cmd == "USER" {
			imageUser = in.args
		}
	}
	if want := fmt.Sprintf("%d:%d", ptrOr(psc.RunAsUser), ptrOr(psc.RunAsGroup)); imageUser != want {
		t.Errorf("runAsUser:runAsGroup %s differs from the image's USER %s", want, imageUser)
	}
	if psc.FSGroup == nil || *psc.FSGroup != ptrOr(psc.RunAsGroup) {
		t.Errorf("fsGroup %v: want the runAsGroup, so volumes are writable and secrets readable", psc.FSGroup)
	}

	stateDir, _ := envValue(c, "EDDY_STATE_DIR")
	for _, vm := range c.VolumeMounts {
		if !vm.ReadOnly && vm.MountPath != stateDir.Value {
			t.Errorf("volume %s is writable at %s: only the state directory %s needs to be", vm.Name, vm.MountPath, stateDir.Value)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
			t.Errorf("secret volume %s: defaultMode %v lets other users read it", v.Name, v.Secret.DefaultMode)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("env %s comes from a Secret: credentials are mounted as files, never environment variables", e.Name)
		}
	}
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			t.Errorf("envFrom Secret %s: credentials are mounted as files, never environment variables", e.SecretRef.Name)
		}
	}
	for _, ns := range m.namespaces {
		if ns.Labels[psapi.EnforceLevelLabel] != string(psapi.LevelRestricted) {
			t.Errorf("Namespace %s does not enforce the restricted Pod Security Standard: %v", ns.Name, ns.Labels)
		}
	}
}

// checkSettings: every environment variable and argument is one eddy
// accepts; the instance id is the pod name; the memory limit reaches eddy;
// the files eddy is told to read are in the volumes that hold them.
func checkSettings(t *testing.T, m *manifests) {
	c := m.eddyContainer(t)
	accepted := eddySettings(t)
	seen := map[string]bool{}
	for _, e := range c.Env {
		if seen[e.Name] {
			t.Errorf("env %s set twice", e.Name)
		}
		seen[e.Name] = true
		if _, ok := accepted[e.Name]; !ok {
			t.Errorf("env %s is not an eddy setting (eddy settings lists %v)", e.Name, slices.Sorted(maps.Keys(accepted)))
		}
	}
	if len(c.Command) > 0 {
		t.Errorf("command %v overrides the image's entrypoint", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Errorf("args %v: want eddy run", c.Args)
	}
	if err := eddyAccepts(c.Args); err != nil {
		t.Error(err)
	}

	id, ok := envValue(c, "EDDY_INSTANCE_ID")
	if !ok || id.ValueFrom == nil || id.ValueFrom.FieldRef == nil || id.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("EDDY_INSTANCE_ID %+v: want the pod name (fieldRef metadata.name), the stable static membership id", id)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--instance-id") {
			t.Errorf("arg %s overrides the pod name as instance id", a)
		}
	}
	mem, ok := envValue(c, "EDDY_MEMORY_LIMIT")
	if rf := mem.ValueFrom; !ok || rf == nil || rf.ResourceFieldRef == nil || rf.ResourceFieldRef.Resource != "limits.memory" ||
		rf.ResourceFieldRef.ContainerName != c.Name || (!rf.ResourceFieldRef.Divisor.IsZero() && rf.ResourceFieldRef.Divisor.Value() != 1) {
		t.Errorf("EDDY_MEMORY_LIMIT %+v: want the container's limits.memory in bytes (resourceFieldRef)", mem)
	}
	if st, _ := envValue(c, "EDDY_SESSION_TIMEOUT"); st.Value != "" {
		if d, err := time.ParseDuration(st.Value); err != nil || d < 30*time.Second {
			t.Errorf("EDDY_SESSION_TIMEOUT %q: want a duration of at least 30s, longer than a pod restart", st.Value)
		}
	}

	// The pipeline: a ConfigMap key, mounted where EDDY_PIPELINE points,
	// that eddy parses.
	pl, _ := envValue(c, "EDDY_PIPELINE")
	vm, vol := m.mountFor(c, pl.Value)
	if vm == nil || vol == nil || vol.ConfigMap == nil {
		t.Fatalf("EDDY_PIPELINE %q is not in a ConfigMap volume", pl.Value)
	}
	cm := m.configMaps[vol.ConfigMap.Name]
	if cm == nil {
		t.Fatalf("volume %s: ConfigMap %s is not in the manifests", vol.Name, vol.ConfigMap.Name)
	}
	key := strings.TrimPrefix(strings.TrimPrefix(pl.Value, vm.MountPath), "/")
	spec, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q (EDDY_PIPELINE %s); keys: %v", cm.Name, key, pl.Value, slices.Collect(maps.Keys(cm.Data)))
	}
	if _, err := topology.Parse([]byte(spec)); err != nil {
		t.Errorf("the pipeline in ConfigMap %s does not parse:\n%v", cm.Name, err)
	}
	if path.Base(m.dir) == "base" {
		want, err := os.ReadFile(filepath.Join("pipelines", "http-requests.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if spec != string(want) {
			t.Error("kubernetes/base/pipeline.yaml differs from pipelines/http-requests.yaml: copy it again")
		}
	}

	// Credential files (every EDDY_*_FILE but the pipeline) come from
	// Secret volumes.
	for _, e := range c.Env {
		name := e.Name
		if !strings.HasSuffix(name, "_FILE") || !strings.HasPrefix(name, "EDDY_") {
			continue
		}
		vm, vol := m.mountFor(c, e.Value)
		if vm == nil || vol == nil || vol.Secret == nil || !vm.ReadOnly {
			t.Errorf("%s %q is not in a read-only Secret volume", name, e.Value)
		}
	}
	if path.Base(m.dir) == "example" {
		for _, name := range []string{"EDDY_SASL_MECHANISM", "EDDY_SASL_USERNAME_FILE", "EDDY_SASL_PASSWORD_FILE", "EDDY_TLS_CA_FILE"} {
			if _, ok := envValue(c, name); !ok {
				t.Errorf("the example overlay does not set %s", name)
			}
		}
	}
}

func ptrOr(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

// TestKubeInstanceSelectors: two pipelines in one namespace, each an
// overlay of the example with its own name prefix and instance label as
// docs/deploy.md describes, render to objects that select only their own
// pods: no StatefulSet, Service, PodDisruptionBudget or spread constraint
// of one matches the pods of the other, and no two objects share a name.
// The example overlay alone also selects by its instance.
func TestKubeInstanceSelectors(t *testing.T) {
	example, err := filepath.Abs("kubernetes/overlays/example")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	var ms []*manifests
	for _, name := range []string{"orders", "payments"} {
		dir := filepath.Join(tmp, name)
		rel, err := filepath.Rel(dir, example) // kustomize takes no absolute resource paths
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
namePrefix: %s-
labels:
  - pairs:
      app.kubernetes.io/instance: %s
    includeSelectors: true
    includeTemplates: true
`, rel, name, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, render(t, dir))
	}
	ms = append(ms, render(t, "kubernetes/overlays/example"))

	// selectors returns every label selector of m, by what it belongs to.
	selectors := func(m *manifests) map[string]labels.Selector {
		out := map[string]labels.Selector{}
		add := func(what string, ls *metav1.LabelSelector) {
			s, err := metav1.LabelSelectorAsSelector(ls)
			if err != nil {
				t.Fatalf("%s %s: %v", m.dir, what, err)
			}
			out[what] = s
		}
		add("StatefulSet "+m.sts.Name, m.sts.Spec.Selector)
		for _, c := range m.sts.Spec.Template.Spec.TopologySpreadConstraints {
			add("spread constraint of "+m.sts.Name, c.LabelSelector)
		}
		for _, s := range m.services {
			out["Service "+s.Name] = labels.SelectorFromSet(s.Spec.Selector)
		}
		for _, p := range m.pdbs {
			add("PodDisruptionBudget "+p.Name, p.Spec.Selector)
		}
		return out
	}
	for i, m := range ms {
		pods := labels.Set(m.sts.Spec.Template.Labels)
		for what, s := range selectors(m) {
			if !s.Matches(pods) {
				t.Errorf("%s: %s does not select its own pods %v", m.dir, what, pods)
			}
			reqs, _ := s.Requirements()
			hasInstance := false
			for _, r := range reqs {
				hasInstance = hasInstance || r.Key() == "app.kubernetes.io/instance"
			}
			if !hasInstance {
				t.Errorf("%s: %s does not select by app.kubernetes.io/instance: %v", m.dir, what, s)
			}
		}
		if i == len(ms)-1 {
			continue // the example alone
		}
		other := ms[1-i]
		otherPods := labels.Set(other.sts.Spec.Template.Labels)
		for what, s := range selectors(m) {
			if s.Matches(otherPods) {
				t.Errorf("%s: %s selects the pods of %s too: %v", m.dir, what, other.dir, otherPods)
			}
		}
	}
	names := map[string]string{}
	for _, m := range ms[:2] {
		objs := []string{"StatefulSet/" + m.sts.Name}
		for _, s := range m.services {
			objs = append(objs, "Service/"+s.Name)
		}
		for _, p := range m.pdbs {
			objs = append(objs, "PodDisruptionBudget/"+p.Name)
		}
		for _, a := range m.accounts {
			objs = append(objs, "ServiceAccount/"+a.Name)
		}
		for n := range m.configMaps {
			objs = append(objs, "ConfigMap/"+n)
		}
		for _, o := range objs {
			if prev, dup := names[o]; dup {
				t.Errorf("%s and %s both define %s", prev, m.dir, o)
			}
			names[o] = m.dir
		}
		if m.sts.Spec.ServiceName != m.services[0].Name {
			t.Errorf("%s: StatefulSet governed by Service %q, the Service is %q", m.dir, m.sts.Spec.ServiceName, m.services[0].Name)
		}
	}
}
