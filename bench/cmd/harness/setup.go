package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
)

// env is everything a workload needs: the broker, the registry, the built
// systems, where logs go, and the processes to stop on the way out.
type env struct {
	root     string // repository root
	work     string // scratch: state dirs, the built binaries
	logDir   string
	cpus     string // taskset CPU list of the system under test
	brokers  string
	registry string
	eddyBin  string
	ksCP     string // classpath of the Kafka Streams peer
	gokaBin  string // the Goka peer (bench/goka, its own module)
	schema   string // a file holding the input's Avro schema, for the Goka peer
	java     string
	cl       *kgo.Client
	adm      *kadm.Client
	enc      *schema.Encoder
	// profileDir, when set, receives CPU and allocation profiles of every
	// eddy run (EDDY_CPUPROFILE, EDDY_MEMPROFILE).
	profileDir string

	mu    sync.Mutex
	procs map[*proc]bool
}

func (e *env) track(p *proc) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.procs[p] = true
}

func (e *env) untrack(p *proc) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.procs, p)
}

// stopAll stops every child still running, one by one.
func (e *env) stopAll() {
	e.mu.Lock()
	var ps []*proc
	for p := range e.procs {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	for _, p := range ps {
		p.stop()
	}
}

func run(dir string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// buildEddy builds cmd/eddy into the scratch dir.
func buildEddy(e *env) error {
	e.eddyBin = filepath.Join(e.work, "eddy")
	_, err := run(e.root, "go", "build", "-o", e.eddyBin, "./cmd/eddy")
	return err
}

// peerJars are the jars whose presence in the cache means that Maven has
// already resolved bench/kstreams/pom.xml: Kafka Streams, and DataDog's
// DDSketch for the p99 workload.
var peerJars = []string{"kafka-streams-4.1.2.jar", "sketches-java-0.8.3.jar"}

// buildPeer resolves Kafka Streams 4.1.2, DDSketch and their dependencies
// from Maven Central (cached under $EDDY_CACHE/kstreams-4.1.2) and compiles
// bench/kstreams/EddyPeer.java with javac.
func buildPeer(e *env) error {
	cache := os.Getenv("EDDY_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "eddy")
	}
	libs := filepath.Join(cache, "kstreams-4.1.2", "libs")
	complete := true
	for _, j := range peerJars {
		if _, err := os.Stat(filepath.Join(libs, j)); err != nil {
			complete = false
		}
	}
	if !complete {
		tmp := libs + ".tmp"
		_ = os.RemoveAll(tmp)
		if _, err := run(e.root, "mvn", "-B", "-q", "--no-transfer-progress", "-f", "bench/kstreams/pom.xml",
			"dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+tmp); err != nil {
			return fmt.Errorf("fetch the Kafka Streams peer's jars (needs Maven and Maven Central): %w", err)
		}
		if err := mergeDir(tmp, libs); err != nil {
			return err
		}
	}
	classes := filepath.Join(e.work, "kstreams-classes")
	if err := os.MkdirAll(classes, 0o755); err != nil {
		return err
	}
	if _, err := run(e.root, "javac", "-d", classes, "-cp", libs+"/*", "bench/kstreams/EddyPeer.java"); err != nil {
		return err
	}
	e.ksCP = classes + ":" + libs + "/*"
	e.java = "java"
	return nil
}

// buildGoka builds the Goka peer (bench/goka, a module of its own so that
// eddy's does not carry Goka's dependencies) and writes the input schema
// where it reads it.
func buildGoka(e *env) error {
	e.gokaBin = filepath.Join(e.work, "goka-peer")
	if _, err := run(filepath.Join(e.root, "bench", "goka"), "go", "build", "-o", e.gokaBin, "."); err != nil {
		return fmt.Errorf("build the Goka peer: %w", err)
	}
	e.schema = filepath.Join(e.work, "event.avsc")
	return os.WriteFile(e.schema, []byte(eventSchema), 0o644)
}

// startBroker starts the Kafka of scripts/kafka.sh in its own state dir.
// The broker stays on the CPUs it inherits from the harness (the Makefile
// pins the harness away from the benchmark CPUs).
func startBroker(e *env, state string) error {
	cmd := exec.Command(filepath.Join(e.root, "scripts/kafka.sh"), "start")
	cmd.Env = append(os.Environ(), "EDDY_KAFKA_STATE="+state, "EDDY_KAFKA_HEAP=-Xms1g -Xmx1g")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("scripts/kafka.sh start: %w", err)
	}
	e.brokers = strings.TrimSpace(string(out))
	return nil
}

func stopBroker(e *env, state string) {
	cmd := exec.Command(filepath.Join(e.root, "scripts/kafka.sh"), "stop")
	cmd.Env = append(os.Environ(), "EDDY_KAFKA_STATE="+state)
	cmd.Stderr = os.Stderr
	_ = cmd.Run()
}

// mergeDir moves the files of src that dst lacks into dst (or renames src
// to dst if there is no dst), then removes src. It never removes a file of
// dst: another harness may be running with dst on its classpath.
func mergeDir(src, dst string) error {
	defer os.RemoveAll(src)
	if _, err := os.Stat(dst); os.IsNotExist(err) {
		return os.Rename(src, dst)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, f := range ents {
		to := filepath.Join(dst, f.Name())
		if _, err := os.Stat(to); err == nil {
			continue
		}
		if err := os.Rename(filepath.Join(src, f.Name()), to); err != nil {
			return err
		}
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRegistry runs `eddy registry` (not pinned: it is idle after the
// schema is registered) and waits until it answers.
func startRegistry(e *env) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	saved := e.cpus
	e.cpus = "0-" + fmt.Sprint(maxCPU())
	p, err := startProc(e, "registry", []string{e.eddyBin, "registry", "--brokers", e.brokers, "--http-addr", addr}, "")
	e.cpus = saved
	if err != nil {
		return nil, err
	}
	e.registry = "http://" + addr
	if err := waitHTTP(context.Background(), e.registry+"/subjects", 2*time.Minute, p); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited (%v)", p.name, p.waitErr)
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 within %s", url, timeout)
}

func maxCPU() int {
	n := 0
	b, _ := os.ReadFile("/sys/devices/system/cpu/online")
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexAny(s, "-,"); i >= 0 {
		fmt.Sscan(s[i+1:], &n)
	}
	return n
}
