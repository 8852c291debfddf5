package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

type machine struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	MemGiB    float64
	Uptime    string `json:"uptime_before"`
	Go        string `json:"go"`
	Java      string `json:"java"`
	Kernel    string `json:"kernel"`
	BenchCPUs string `json:"bench_cpus"`
}

func (m machine) summary() string {
	return fmt.Sprintf("%d CPUs (%s), %.1f GiB, %s, %s, Java %s; load before: %s", m.NProc, m.CPUModel, m.MemGiB, m.Kernel, m.Go, m.Java, m.Uptime)
}

func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func machineInfo(cpus string) machine {
	m := machine{NProc: maxCPU() + 1, Go: runtime.Version(), BenchCPUs: cpus}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPUModel = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		m.MemGiB = kb / (1 << 20)
	}
	m.Uptime = firstLine("uptime")
	m.Java = firstLine("java", "-version")
	m.Kernel = firstLine("uname", "-sr")
	return m
}

type datasetInfo struct {
	dataset
	ValueBytes float64 `json:"value_bytes"`
}

type report struct {
	cfg      config
	machine  machine
	started  time.Time
	finished time.Time
	datasets []datasetInfo
	results  []Result
	failures []string
	// agreements compare the two systems' results, per workload and repetition.
	agreements []agreement
	// uptimeAfter is uptime's line at the end: other load on a shared machine shows here.
	uptimeAfter string
}

// median of f over the runs of workload and system, 0 if none.
func (r *report) median(workload, sys string, f func(Result) float64) float64 {
	m, _, _ := r.stats(workload, sys, f)
	return m
}

// stats gives the median, min and max of f over the runs.
func (r *report) stats(workload, sys string, f func(Result) float64) (med, lo, hi float64) {
	var xs []float64
	for _, x := range r.results {
		if x.Workload == workload && x.System == sys {
			xs = append(xs, f(x))
		}
	}
	if len(xs) == 0 {
		return 0, 0, 0
	}
	slices.Sort(xs)
	med = xs[len(xs)/2]
	if len(xs)%2 == 0 {
		med = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return med, xs[0], xs[len(xs)-1]
}

func (r *report) has(workload, sys string) bool {
	for _, x := range r.results {
		if x.Workload == workload && x.System == sys {
			return true
		}
	}
	return false
}

// cell formats "median (min–max)".
func (r *report) cell(workload, sys string, f func(Result) float64, format string) string {
	if !r.has(workload, sys) {
		return "–"
	}
	m, lo, hi := r.stats(workload, sys, f)
	if lo == hi {
		return fmt.Sprintf(format, m)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", m, lo, hi)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

var (
	fRate      = func(x Result) float64 { return x.Rate }
	fCPU       = func(x Result) float64 { return x.CPUPerM }
	fRSS       = func(x Result) float64 { return x.PeakRSS }
	fReady     = func(x Result) float64 { return x.ReadySec }
	fRest      = func(x Result) float64 { return x.RestoreRate }
	fP50       = func(x Result) float64 { return x.P50 }
	fP99       = func(x Result) float64 { return x.P99 }
	fP999      = func(x Result) float64 { return x.P999 }
	fSteady    = func(x Result) float64 { return x.SteadyRate }
	fSteadyCPU = func(x Result) float64 { return x.SteadyCPUPerM }
	fLoad      = func(x Result) float64 { return x.Load }
	fOffer     = func(x Result) float64 { return x.OfferedRate }
	fOuts      = func(x Result) float64 { return float64(x.Outputs) }
)

// throughputWorkloads are the workloads of the throughput table and chart,
// in their order.
var throughputWorkloads = []string{"count-u100k", "count-u1k", "count-z100k", "count-u1m", "filter", "p99-u100k", "count-u100k-eos"}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmark results\n\n")
	w("Run %s to %s. Machine: %s. System under test pinned to CPU(s) %s; broker, registry, load generator and harness on the others.\n\n",
		r.started.Format(time.RFC3339), r.finished.Format(time.RFC3339), r.machine.summary(), r.cfg.cpus)
	w("Load after the run: %s.\n\n", r.uptimeAfter)
	w("Records per throughput topic: %d; repetitions: %d; cells are median (min–max).\n\n", r.cfg.records, r.cfg.reps)
	if len(r.datasets) > 0 {
		w("| topic | records | keys | distribution | value bytes |\n| --- | --- | --- | --- | --- |\n")
		for _, d := range r.datasets {
			w("| %s | %d | %d | %s | %.0f |\n", d.Topic(), d.Records, d.Keys, d.Dist, d.ValueBytes)
		}
		w("\n")
	}
	if r.has("consume", sysFranz) || r.has("consume", sysJavaCon) {
		w("## (a) Consume-only ceiling (topic in-u100k, no decoding)\n\n| client | records/s | CPU-s per M records | peak RSS MiB |\n| --- | --- | --- | --- |\n")
		for _, s := range []string{sysFranz, sysJavaCon} {
			w("| %s | %s | %s | %s |\n", s, r.cell("consume", s, fRate, "%.0f"), r.cell("consume", s, fCPU, "%.2f"), r.cell("consume", s, fRSS, "%.0f"))
		}
		w("\n")
	}
	var tp []string
	for _, wl := range throughputWorkloads {
		if r.has(wl, sysEddy) || r.has(wl, sysKS) {
			tp = append(tp, wl)
		}
	}
	if len(tp) > 0 {
		w("## (b), (c), (d) Throughput, one core\n\n")
		w("| workload | eddy records/s | Kafka Streams records/s | ratio eddy/KS | eddy CPU-s/M | KS CPU-s/M | KS/eddy CPU per record | eddy peak RSS MiB | KS peak RSS MiB | results written eddy / KS |\n")
		w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, wl := range tp {
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n", wl,
				r.cell(wl, sysEddy, fRate, "%.0f"), r.cell(wl, sysKS, fRate, "%.0f"),
				ratio(r.median(wl, sysEddy, fRate), r.median(wl, sysKS, fRate)),
				r.cell(wl, sysEddy, fCPU, "%.1f"), r.cell(wl, sysKS, fCPU, "%.1f"),
				ratio(r.median(wl, sysKS, fCPU), r.median(wl, sysEddy, fCPU)),
				r.cell(wl, sysEddy, fRSS, "%.0f"), r.cell(wl, sysKS, fRSS, "%.0f"),
				r.cell(wl, sysEddy, fOuts, "%.0f"), r.cell(wl, sysKS, fOuts, "%.0f"))
		}
		w("\n")
	}
	if len(tp) > 0 {
		w("## (g) Steady state: the second half of each run\n\n")
		w("Records/s from the first commit that covers half of the records to the end, next to the whole run (first commit to the end): without start-up, Kafka Streams' JIT warm-up and the first commits.\n\n")
		w("| workload | eddy whole run | eddy second half | KS whole run | KS second half | ratio whole run | ratio second half | eddy / KS CPU-s/M, second half |\n")
		w("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, wl := range tp {
			w("| %s | %s | %s | %s | %s | %s | **%s** | %s / %s |\n", wl,
				r.cell(wl, sysEddy, fRate, "%.0f"), r.cell(wl, sysEddy, fSteady, "%.0f"),
				r.cell(wl, sysKS, fRate, "%.0f"), r.cell(wl, sysKS, fSteady, "%.0f"),
				ratio(r.median(wl, sysEddy, fRate), r.median(wl, sysKS, fRate)),
				ratio(r.median(wl, sysEddy, fSteady), r.median(wl, sysKS, fSteady)),
				r.cell(wl, sysEddy, fSteadyCPU, "%.1f"), r.cell(wl, sysKS, fSteadyCPU, "%.1f"))
		}
		w("\n")
	}
	if r.has("io-u100k", sysFranz) {
		io := r.median("io-u100k", sysFranz, fRate)
		w("## (h) I/O ceiling of count-u100k's record flow\n\n")
		w("franz-go (`harness iocopy`, on the system under test's CPUs): consume in-u100k and produce, per input record, one result-sized record and one changelog-sized record; no decoding, no state; timed from before the first fetch to the last acknowledgement (CPU includes process start-up).\n\n")
		w("| | records/s | CPU-s per M records | peak RSS MiB |\n| --- | --- | --- | --- |\n")
		w("| I/O ceiling (franz-go) | %s | %s | %s |\n", r.cell("io-u100k", sysFranz, fRate, "%.0f"), r.cell("io-u100k", sysFranz, fCPU, "%.2f"), r.cell("io-u100k", sysFranz, fRSS, "%.0f"))
		for _, x := range []struct {
			name string
			f    func(Result) float64
		}{{"whole run", fRate}, {"second half", fSteady}} {
			if e := r.median("count-u100k", sysEddy, x.f); e > 0 {
				w("| eddy count-u100k, %s | %.0f | | | \n", x.name, e)
				w("| eddy as a fraction of the I/O ceiling, %s | **%.0f%%** | | |\n", x.name, 100*e/max(io, 1))
			}
		}
		w("\n")
	}
	var gk []string
	for _, wl := range throughputWorkloads {
		if r.has(wl, sysGoka) {
			gk = append(gk, wl)
		}
	}
	if len(gk) > 0 {
		w("## (i) The Go peer: Goka, one core\n\n")
		w("bench/goka: the count per key per window in Goka v1.1.14 (sarama, LevelDB), re-keyed to (key, window start) through its loop topic, results emitted on every update (Goka has no windows). Same input, same one core, same measurement.\n\n")
		w("| workload | eddy records/s | Goka records/s | ratio eddy/Goka | eddy / Goka, second half | eddy CPU-s/M | Goka CPU-s/M | Goka/eddy CPU per record | Goka peak RSS MiB | results written eddy / Goka |\n")
		w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, wl := range gk {
			w("| %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %s / %s |\n", wl,
				r.cell(wl, sysEddy, fRate, "%.0f"), r.cell(wl, sysGoka, fRate, "%.0f"),
				ratio(r.median(wl, sysEddy, fRate), r.median(wl, sysGoka, fRate)),
				ratio(r.median(wl, sysEddy, fSteady), r.median(wl, sysGoka, fSteady)),
				r.cell(wl, sysEddy, fCPU, "%.1f"), r.cell(wl, sysGoka, fCPU, "%.1f"),
				ratio(r.median(wl, sysGoka, fCPU), r.median(wl, sysEddy, fCPU)),
				r.cell(wl, sysGoka, fRSS, "%.0f"), r.cell(wl, sysEddy, fOuts, "%.0f"), r.cell(wl, sysGoka, fOuts, "%.0f"))
		}
		w("\n")
	}
	if len(r.agreements) > 0 {
		w("## Agreement of the results\n\n")
		w("For the keys whose FNV-1a hash is 0 mod %d, every (key, window) result that both systems emitted, compared with the other system's (counts exactly, p99s within %.0f%% of the larger: each DDSketch is within 1%% of the true value) and with the exact result computed from the generated records (counts exactly, p99 within 1%% of the value of rank ⌊0.99·(n−1)⌋; not for filter). Mismatches, if any, are listed in logs/<workload>-<rep>.mismatches.txt.\n\n", sampleEvery, 100*p99Tolerance)
		w("| workload | peer | rep | compared | only eddy | only peer | count mismatches | p99 compared (over ≥2 records) | p99 equal | p99 beyond %.0f%% | max p99 difference | off exact: eddy / peer | max p99 error vs exact: eddy / peer |\n", 100*p99Tolerance)
		w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, a := range r.agreements {
			p99, exact, exactErr := "– | – | – | –", "–", "–"
			if a.P99Compared > 0 {
				p99 = fmt.Sprintf("%d (%d) | %d | %d | %.2g%%", a.P99Compared, a.P99Multi, a.P99Equal, a.P99Bad, 100*a.P99MaxRel)
			}
			if a.ExactCompared > 0 {
				exact = fmt.Sprintf("%d / %d of %d", a.EddyOff, a.KSOff, a.ExactCompared)
				if a.P99Compared > 0 {
					exactErr = fmt.Sprintf("%.3f%% / %.3f%%", 100*a.EddyMaxErr, 100*a.KSMaxErr)
				}
			}
			peer := a.Peer
			if peer == "" {
				peer = sysKS // results from before the Goka peer
			}
			w("| %s | %s | %d | %d | %d | %d | %d | %s | %s | %s |\n", a.Workload, peer, a.Rep, a.Compared, a.OnlyEddy, a.OnlyKS, a.CountBad, p99, exact, exactErr)
		}
		w("\n")
	}
	if r.has("restore", sysEddy) || r.has("restore", sysKS) {
		w("## (e) Restore: start to ready, no local state\n\n| system | changelog records | start→ready s | changelog records/s | peak RSS MiB |\n| --- | --- | --- | --- | --- |\n")
		for _, s := range []string{sysEddy, sysKS} {
			var clog int64
			for _, x := range r.results {
				if x.Workload == "restore" && x.System == s {
					clog = x.Changelog
				}
			}
			w("| %s | %d | %s | %s | %s |\n", s, clog, r.cell("restore", s, fReady, "%.2f"), r.cell("restore", s, fRest, "%.0f"), r.cell("restore", s, fRSS, "%.0f"))
		}
		w("\nBuilding the changelog (every record a new key, windows that never close):\n\n| system | records/s | CPU-s/M | peak RSS MiB |\n| --- | --- | --- | --- |\n")
		for _, s := range []string{sysEddy, sysKS} {
			w("| %s | %s | %s | %s |\n", s, r.cell("restore-build", s, fRate, "%.0f"), r.cell("restore-build", s, fCPU, "%.1f"), r.cell("restore-build", s, fRSS, "%.0f"))
		}
		w("\n")
	}
	var lt []string
	for _, wl := range []string{"latency-10k", "latency-half", "passthrough-10k"} {
		if wl == "passthrough-10k" {
			continue // listed with the others, below
		}
		if r.has(wl, sysEddy) || r.has(wl, sysKS) || (wl == "latency-10k" && r.has("passthrough-10k", sysPass)) {
			lt = append(lt, wl)
		}
	}
	if len(lt) > 0 {
		w("## (f) End-to-end latency, open loop (ms, record creation to output append)\n\n| workload | system | offered/s | p50 | p99 | p99.9 | CPU-s/M | peak RSS MiB |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		if r.has("passthrough-10k", sysPass) {
			lt = append(lt, "passthrough-10k")
		}
		for _, wl := range lt {
			for _, s := range []string{sysEddy, sysKS, sysPass} {
				if !r.has(wl, s) {
					continue
				}
				w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", wl, s, r.cell(wl, s, fOffer, "%.0f"),
					r.cell(wl, s, fP50, "%.0f"), r.cell(wl, s, fP99, "%.0f"), r.cell(wl, s, fP999, "%.0f"),
					r.cell(wl, s, fCPU, "%.1f"), r.cell(wl, s, fRSS, "%.0f"))
			}
		}
		w("\n")
	}
	w("## Targets\n\n")
	target := func(name string, ok bool, have bool, detail string) {
		st := "not measured"
		if !have {
			detail = "–" // the numbers would be of missing runs
		} else {
			st = "missed"
			if ok {
				st = "met"
			}
		}
		w("- %s: **%s** (%s)\n", name, st, detail)
	}
	e, k := r.median("count-u100k", sysEddy, fRate), r.median("count-u100k", sysKS, fRate)
	target("(c) 100k keys, eddy ≥ 2x Kafka Streams per core", e >= 2*k, e > 0 && k > 0, "ratio "+ratio(e, k))
	f := r.median("consume", sysFranz, fRate)
	target("(c) 100k keys, eddy ≥ 50% of the franz-go consume ceiling", e >= f/2, e > 0 && f > 0, fmt.Sprintf("%.0f%%", 100*e/max(f, 1)))
	rr := r.median("restore", sysEddy, fRest)
	target("(e) restore ≥ 1M changelog records/s", rr >= 1e6, rr > 0, fmt.Sprintf("%.0f records/s", rr))
	io := r.median("io-u100k", sysFranz, fRate)
	target("(c) 100k keys, eddy ≥ 50% of the I/O ceiling of its record flow", e >= io/2, e > 0 && io > 0, fmt.Sprintf("%.0f%%", 100*e/max(io, 1)))
	p := r.median("latency-10k", sysEddy, fP99)
	pt := ""
	if r.has("passthrough-10k", sysPass) {
		pt = fmt.Sprintf("; the pass-through baseline's p99 %.0f ms", r.median("passthrough-10k", sysPass, fP99))
	}
	target("(f) p99 < 50 ms at 10k/s", p < 50, r.has("latency-10k", sysEddy), fmt.Sprintf("p99 %.0f ms%s", p, pt))
	w("\n## Machine load\n\nThe 1-minute load average at the end of each run (the machine's own load: numbers taken at a load above its CPU count are noisy).\n\n| workload | system | load median (min–max) |\n| --- | --- | --- |\n")
	type ws struct{ wl, sys string }
	var seen []ws
	for _, x := range r.results {
		k := ws{x.Workload, x.System}
		if !slices.Contains(seen, k) {
			seen = append(seen, k)
			w("| %s | %s | %s |\n", k.wl, k.sys, r.cell(k.wl, k.sys, fLoad, "%.1f"))
		}
	}
	if len(r.failures) > 0 {
		w("\n## Failures\n\n")
		for _, f := range r.failures {
			w("- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
	}
	return b.String()
}

func (r *report) write() error {
	if err := os.MkdirAll(r.cfg.out, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(map[string]any{
		"started": r.started, "finished": r.finished, "machine": r.machine,
		"records": r.cfg.records, "reps": r.cfg.reps, "datasets": r.datasets,
		"results": r.results, "failures": r.failures, "uptime_after": r.uptimeAfter, "cpus": r.cfg.cpus,
		"agreements": r.agreements,
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.cfg.out, "results.json"), j, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.cfg.out, "summary.md"), []byte(r.markdown()), 0o644)
}

// reportCmd is `harness report DIR`: rewrite DIR/summary.md and
// DIR/throughput.png from DIR/results.json (after editing the tables'
// code, without running everything again).
func reportCmd(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: harness report RESULTS_DIR")
	}
	b, err := os.ReadFile(filepath.Join(args[0], "results.json"))
	if err != nil {
		return err
	}
	var saved struct {
		Started, Finished time.Time
		Machine           machine
		Records, Reps     int
		Datasets          []datasetInfo
		Results           []Result
		Failures          []string
		UptimeAfter       string `json:"uptime_after"`
		CPUs              string
		Agreements        []agreement
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		return err
	}
	r := &report{cfg: config{records: saved.Records, reps: saved.Reps, cpus: saved.CPUs, out: args[0]},
		machine: saved.Machine, started: saved.Started, finished: saved.Finished, datasets: saved.Datasets,
		results: saved.Results, failures: saved.Failures, uptimeAfter: saved.UptimeAfter, agreements: saved.Agreements}
	if r.cfg.cpus == "" {
		r.cfg.cpus = saved.Machine.BenchCPUs
	}
	if err := r.write(); err != nil {
		return err
	}
	return r.chart()
}
