// Command harness runs eddy and a Kafka Streams application of the same
// logic (bench/kstreams/EddyPeer.java) side by side on one real Kafka broker
// and the same pre-loaded data, and writes the results under bench/results/.
// `make bench` runs it; BENCHMARKS.md explains the workloads and settings.
//
// Steps: build eddy, fetch Kafka Streams 4.1.2 from Maven Central and
// compile the peer, start Kafka with scripts/kafka.sh and eddy's schema
// registry, pre-load the input topics (Avro, Confluent wire format) once
// and read each once untimed (page cache), then run every workload for
// every system, each repeated EDDY_BENCH_REPS times, the system under test
// pinned with taskset to EDDY_BENCH_CPUS. Every process it starts is
// stopped on the way out, on errors and on SIGINT/SIGTERM too.
//
// Environment (defaults in parentheses):
//
//	EDDY_BENCH_QUICK=1          a smoke run: fewer records, one repetition
//	EDDY_BENCH_RECORDS          records per throughput topic (500000; quick 200000)
//	EDDY_BENCH_RESTORE_KEYS     keys in the restore changelog (1000000; quick 200000)
//	EDDY_BENCH_REPS             repetitions of each configuration (3; quick 1)
//	EDDY_BENCH_LATENCY_SECONDS  offered-load duration of a latency run (20; quick 15)
//	EDDY_BENCH_WORKLOADS        comma-separated subset of: consume, count-u100k,
//	                            io-u100k, filter, restore, latency-10k, passthrough-10k,
//	                            count-u1k, count-z100k, count-u1m, latency-half,
//	                            p99-u100k (all of these),
//	                            and count-u100k-eos (exactly-once; only when named)
//	EDDY_BENCH_CPUS             CPUs of the system under test (1)
//	EDDY_BENCH_SYSTEMS          comma-separated subset of eddy, kstreams, goka (all);
//	                            goka runs the count workloads at least once only
//	EDDY_BENCH_PROFILE=1        write CPU and allocation profiles of every eddy
//	                            run to <out>/profiles (go tool pprof)
//	EDDY_BENCH_OUT              results directory (bench/results)
//	EDDY_CACHE                  jar cache root ($HOME/.cache/eddy)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// config is the harness configuration, from the environment.
type config struct {
	quick       bool
	records     int
	restoreKeys int
	reps        int
	latencyDur  time.Duration
	workloads   []string
	cpus        string
	out         string
	systems     []string // eddy, kstreams, goka (EDDY_BENCH_SYSTEMS; default all three)
}

var (
	allWorkloads = []string{"consume", "io-u100k", "count-u100k", "filter", "restore", "latency-10k", "passthrough-10k",
		"count-u1k", "count-z100k", "count-u1m", "latency-half", "p99-u100k", "count-u100k-eos"}
	defaultWorkloads = allWorkloads[:len(allWorkloads)-1]
)

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
		fmt.Fprintf(os.Stderr, "harness: %s=%q is not a positive integer; using %d\n", name, v, def)
	}
	return def
}

func loadConfig(root string) (config, error) {
	c := config{quick: os.Getenv("EDDY_BENCH_QUICK") == "1"}
	recs, keys, reps, lat := 500_000, 1_000_000, 3, 20
	if c.quick {
		recs, keys, reps, lat = 200_000, 200_000, 1, 15
	}
	c.records = envInt("EDDY_BENCH_RECORDS", recs)
	c.restoreKeys = envInt("EDDY_BENCH_RESTORE_KEYS", keys)
	c.reps = envInt("EDDY_BENCH_REPS", reps)
	c.latencyDur = time.Duration(envInt("EDDY_BENCH_LATENCY_SECONDS", lat)) * time.Second
	c.workloads = defaultWorkloads
	if v := os.Getenv("EDDY_BENCH_WORKLOADS"); v != "" {
		c.workloads = nil
		for _, w := range strings.Split(v, ",") {
			w = strings.TrimSpace(w)
			if !slices.Contains(allWorkloads, w) {
				return c, fmt.Errorf("EDDY_BENCH_WORKLOADS: unknown workload %q (known: %s)", w, strings.Join(allWorkloads, ", "))
			}
			c.workloads = append(c.workloads, w)
		}
	}
	c.systems = []string{sysEddy, sysKS, sysGoka}
	if v := os.Getenv("EDDY_BENCH_SYSTEMS"); v != "" {
		c.systems = nil
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s != sysEddy && s != sysKS && s != sysGoka {
				return c, fmt.Errorf("EDDY_BENCH_SYSTEMS: unknown system %q (known: %s, %s, %s)", s, sysEddy, sysKS, sysGoka)
			}
			c.systems = append(c.systems, s)
		}
	}
	c.cpus = os.Getenv("EDDY_BENCH_CPUS")
	if c.cpus == "" {
		c.cpus = "1"
	}
	c.out = os.Getenv("EDDY_BENCH_OUT")
	if c.out == "" {
		c.out = filepath.Join(root, "bench", "results")
	}
	return c, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "consume" {
		if err := consumeCmd(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "harness consume:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && (os.Args[1] == "iocopy" || os.Args[1] == "passthrough") {
		cmd := iocopyCmd
		if os.Args[1] == "passthrough" {
			cmd = passthroughCmd
		}
		if err := cmd(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "harness %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "report" {
		if err := reportCmd(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "harness report:", err)
			os.Exit(1)
		}
		return
	}
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "harness %s: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func mainErr() error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "kafka.sh")); err != nil {
		return fmt.Errorf("run from the repository root (no scripts/kafka.sh in %s)", root)
	}
	cfg, err := loadConfig(root)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp("", "eddy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	logDir := filepath.Join(cfg.out, "logs")
	_ = os.RemoveAll(logDir)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	e := &env{root: root, work: work, logDir: logDir, cpus: cfg.cpus, procs: map[*proc]bool{}}
	if os.Getenv("EDDY_BENCH_PROFILE") == "1" {
		e.profileDir = filepath.Join(cfg.out, "profiles")
		if err := os.MkdirAll(e.profileDir, 0o755); err != nil {
			return err
		}
	}
	defer e.stopAll()

	rep := &report{cfg: cfg, started: time.Now().UTC()}
	rep.machine = machineInfo(cfg.cpus)
	say("machine: %s", rep.machine.summary())

	say("building eddy and the Kafka Streams peer")
	if err := buildEddy(e); err != nil {
		return err
	}
	if slices.Contains(cfg.systems, sysKS) {
		if err := buildPeer(e); err != nil {
			return err
		}
	}
	if slices.Contains(cfg.systems, sysGoka) {
		if err := buildGoka(e); err != nil {
			return err
		}
	}
	brokerState := "/tmp/eddy-kafka-bench"
	say("starting Kafka (scripts/kafka.sh, state %s)", brokerState)
	if err := startBroker(e, brokerState); err != nil {
		return err
	}
	defer stopBroker(e, brokerState)
	if e.cl, err = kgo.NewClient(kgo.SeedBrokers(e.brokers)); err != nil {
		return err
	}
	defer e.cl.Close()
	e.adm = kadm.NewClient(e.cl)
	regProc, err := startRegistry(e)
	if err != nil {
		return err
	}
	defer regProc.stop()
	if e.enc, err = newEncoder(ctx, e.registry); err != nil {
		return err
	}
	say("broker %s, registry %s, system under test on CPUs %s", e.brokers, e.registry, cfg.cpus)

	r := &runner{e: e, cfg: cfg, rep: rep, loaded: map[string]bool{}, sampled: map[string][]sampledEvent{}}
	for _, wl := range cfg.workloads {
		if ctx.Err() != nil {
			break
		}
		say("workload %s", wl)
		if err := r.workload(ctx, wl); err != nil {
			say("workload %s failed: %v", wl, err)
			rep.failures = append(rep.failures, fmt.Sprintf("%s: %v", wl, err))
		}
		if err := rep.write(); err != nil {
			return err
		}
	}
	rep.finished = time.Now().UTC()
	rep.uptimeAfter = firstLine("uptime")
	if err := rep.write(); err != nil {
		return err
	}
	if err := rep.chart(); err != nil {
		say("chart: %v", err)
	}
	say("results: %s", filepath.Join(cfg.out, "summary.md"))
	return ctx.Err()
}

// runner runs workloads, pre-loading each dataset on first use.
type runner struct {
	e      *env
	cfg    config
	rep    *report
	loaded map[string]bool
	// sampled holds each dataset's events of the sampled keys.
	sampled map[string][]sampledEvent
}

func (r *runner) dataset(ctx context.Context, d dataset) error {
	if r.loaded[d.Name] {
		return nil
	}
	t0 := time.Now()
	size, sampled, err := preload(ctx, r.e, d)
	if err != nil {
		return err
	}
	r.sampled[d.Name] = sampled
	n, _, _, err := consumeAll(ctx, r.e.brokers, d.Topic()) // warm read, untimed
	if err != nil {
		return err
	}
	say("pre-loaded %s: %d records, %d keys (%s), %.0f-byte values, in %s; warm read %d records",
		d.Topic(), d.Records, d.Keys, d.Dist, size, time.Since(t0).Round(time.Millisecond), n)
	r.rep.datasets = append(r.rep.datasets, datasetInfo{dataset: d, ValueBytes: size})
	r.loaded[d.Name] = true
	return nil
}

func (r *runner) add(res Result) {
	res.Load = loadAvg()
	say("  %s %s rep %d: %s", res.Workload, res.System, res.Rep, res.brief())
	r.rep.results = append(r.rep.results, res)
}

func (r *runner) workload(ctx context.Context, wl string) error {
	n := r.cfg.records
	u100k := dataset{Name: "u100k", Keys: 100_000, Dist: "uniform", Records: n}
	alo := pipeline{mode: "count", windowMs: 10_000, graceMs: 5_000, commitMs: 1000, guarantee: "at_least_once"}
	both := r.cfg.systems
	var pair []string // eddy and Kafka Streams: the workloads the Goka peer has no logic for
	for _, s := range both {
		if s != sysGoka {
			pair = append(pair, s)
		}
	}
	var (
		d  dataset
		pl = alo
	)
	switch wl {
	case "consume":
		if err := r.dataset(ctx, u100k); err != nil {
			return err
		}
		for rep := 1; rep <= r.cfg.reps; rep++ {
			for _, sys := range []string{sysFranz, sysJavaCon} {
				res, err := runConsume(ctx, r.e, sys, rep, u100k)
				if err != nil {
					return err
				}
				r.add(res)
			}
		}
		return nil
	case "io-u100k":
		if err := r.dataset(ctx, u100k); err != nil {
			return err
		}
		for rep := 1; rep <= r.cfg.reps; rep++ {
			res, err := runIOCeiling(ctx, r.e, rep, u100k)
			if err != nil {
				return err
			}
			r.add(res)
		}
		return nil
	case "passthrough-10k":
		for rep := 1; rep <= r.cfg.reps; rep++ {
			res, err := runLatency(ctx, r.e, wl, sysPass, rep, 10_000, r.cfg.latencyDur, 1000)
			if err != nil {
				return err
			}
			r.add(res)
		}
		return nil
	case "restore":
		d = dataset{Name: "seq" + short(r.cfg.restoreKeys), Keys: r.cfg.restoreKeys, Dist: "seq", Records: r.cfg.restoreKeys}
		if err := r.dataset(ctx, d); err != nil {
			return err
		}
		for _, sys := range pair {
			res, err := runRestore(ctx, r.e, sys, r.cfg.reps, d)
			for _, x := range res {
				r.add(x)
			}
			if err != nil {
				return err
			}
		}
		return nil
	case "latency-10k", "latency-half":
		for rep := 1; rep <= r.cfg.reps; rep++ {
			for _, sys := range pair {
				rate := 10_000
				if wl == "latency-half" {
					max := r.rep.median("filter", sys, func(x Result) float64 { return x.Rate })
					if max == 0 {
						return fmt.Errorf("latency-half needs the filter workload's rates: run filter first")
					}
					rate = int(max / 2)
				}
				res, err := runLatency(ctx, r.e, wl, sys, rep, rate, r.cfg.latencyDur, 1000)
				if err != nil {
					return err
				}
				r.add(res)
			}
		}
		return nil
	case "count-u100k":
		d = u100k
	case "p99-u100k":
		d = u100k
		pl.mode = "p99"
	case "count-u100k-eos":
		d = u100k
		pl.guarantee = "exactly_once_v2"
		pl.commitMs = 100 // Kafka Streams' exactly-once default; eddy the same
	case "count-u1k":
		d = dataset{Name: "u1k", Keys: 1000, Dist: "uniform", Records: n}
	case "count-u1m":
		d = dataset{Name: "u1m", Keys: 1_000_000, Dist: "uniform", Records: n}
	case "count-z100k":
		d = dataset{Name: "z100k", Keys: 100_000, Dist: "zipf", Records: n}
	case "filter":
		d = dataset{Name: "u1k", Keys: 1000, Dist: "uniform", Records: n}
		pl.mode = "filter"
		// Records reach the repartition topic from six source partitions
		// processed at their own pace, so out of event-time order by
		// seconds: a grace that keeps both systems from dropping them.
		pl.graceMs = 60_000
	default:
		return fmt.Errorf("unknown workload %q", wl)
	}
	if err := r.dataset(ctx, d); err != nil {
		return err
	}
	for rep := 1; rep <= r.cfg.reps; rep++ {
		samples := map[string]resultSample{}
		for _, sys := range both {
			if sys == sysGoka && (pl.mode != "count" || pl.guarantee != "at_least_once") {
				continue // the Goka peer counts, at least once
			}
			res, sample, err := runThroughput(ctx, r.e, wl, sys, rep, pl, d)
			if err != nil {
				return fmt.Errorf("%s: %w", sys, err)
			}
			r.add(res)
			samples[sys] = sample
		}
		exact := exactSample(r.sampled[d.Name], pl.windowMs, pl.mode)
		for _, peer := range []string{sysKS, sysGoka} {
			if samples[sysEddy] != nil && samples[peer] != nil {
				a := compareSamples(wl, rep, samples[sysEddy], samples[peer], exact)
				a.Peer = peer
				r.agree(a)
			}
		}
	}
	return nil
}

// agree records one repetition's agreement check, and its mismatches in
// the log directory.
func (r *runner) agree(a agreement) {
	verdict := "agree"
	if !a.ok() {
		verdict = "DISAGREE"
	}
	say("  %s rep %d: eddy and %s %s: %s", a.Workload, a.Rep, a.Peer, verdict, a.brief())
	if len(a.Mismatches) > 0 {
		f := filepath.Join(r.e.logDir, fmt.Sprintf("%s-%d-%s.mismatches.txt", a.Workload, a.Rep, a.Peer))
		if err := os.WriteFile(f, []byte(strings.Join(a.Mismatches, "\n")+"\n"), 0o644); err != nil {
			say("write %s: %v", f, err)
		}
	}
	r.rep.agreements = append(r.rep.agreements, a)
}

func short(n int) string {
	switch {
	case n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "m"
	case n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

func (r Result) brief() string {
	b, _ := json.Marshal(r)
	return string(b)
}
