package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Systems under test.
const (
	sysEddy    = "eddy"
	sysKS      = "kstreams"
	sysGoka    = "goka"
	sysFranz   = "franz-go"
	sysJavaCon = "java-consumer"
)

// Result is one measured run.
type Result struct {
	Workload string  `json:"workload"`
	System   string  `json:"system"`
	Rep      int     `json:"rep"`
	Records  int64   `json:"records"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"records_per_sec,omitempty"`
	CPUPerM  float64 `json:"cpu_sec_per_million,omitempty"`
	PeakRSS  float64 `json:"peak_rss_mib,omitempty"`
	Startup  float64 `json:"startup_sec,omitempty"`
	Outputs  int64   `json:"output_records,omitempty"` // results written, a check that both did the same work
	// the second half of a throughput run (see throughput.SteadyRate)
	SteadyRate    float64 `json:"steady_records_per_sec,omitempty"`
	SteadyCPUPerM float64 `json:"steady_cpu_sec_per_million,omitempty"`
	// restore
	ReadySec    float64 `json:"ready_sec,omitempty"`
	Changelog   int64   `json:"changelog_records,omitempty"`
	RestoreRate float64 `json:"restore_records_per_sec,omitempty"`
	// latency
	OfferedRate float64 `json:"offered_per_sec,omitempty"`
	P50         float64 `json:"p50_ms,omitempty"`
	P99         float64 `json:"p99_ms,omitempty"`
	P999        float64 `json:"p999_ms,omitempty"`
	Samples     int     `json:"latency_samples,omitempty"`
	Note        string  `json:"note,omitempty"`
	// Load is the machine's 1-minute load average when the run ended.
	Load float64 `json:"loadavg_1m,omitempty"`
}

// loadAvg is the 1-minute load average (/proc/loadavg), 0 if unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// pipeline is the logic of one streaming workload, for both systems.
type pipeline struct {
	mode      string // EddyPeer mode: count, filter, latency or p99
	windowMs  int64
	graceMs   int64
	commitMs  int64
	guarantee string // at_least_once or exactly_once_v2
}

func dur(ms int64) string { return strconv.FormatInt(ms, 10) + "ms" }

// eddySpec writes the eddy pipeline with the same logic as EddyPeer's mode.
func eddySpec(pl pipeline, app, input, output string) string {
	processing := "at_least_once"
	if pl.guarantee == "exactly_once_v2" {
		processing = "exactly_once"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "app: %s\n", app)
	keyed := pl.mode != "filter"
	fmt.Fprintf(&b, "source: {topics: [%s], format: avro, keyed_by_group_key: %v}\n", input, keyed)
	b.WriteString("time: {field: ts, max_future: 1h}\n")
	if pl.mode == "filter" {
		b.WriteString("filter: 'region != \"ap-south-1\"'\n")
	}
	b.WriteString("key: [key]\n")
	fmt.Fprintf(&b, "window: {type: tumbling, size: %s, grace: %s}\n", dur(pl.windowMs), dur(pl.graceMs))
	b.WriteString("aggregates:\n  - {name: requests, op: count}\n")
	if pl.mode == "p99" {
		b.WriteString("  - {name: p99_latency_ms, op: p99, field: latency_ms}\n")
	}
	if pl.mode == "latency" {
		b.WriteString("  - {name: last_ts, op: max, field: ts}\nemit: update\n")
	} else {
		b.WriteString("emit: close\n")
	}
	fmt.Fprintf(&b, "output: {topic: %s}\n", output)
	fmt.Fprintf(&b, "processing: %s\ncommit_interval: %s\n", processing, dur(pl.commitMs))
	// Event times of the pre-loaded data are in the past: keep the wall
	// clock from advancing stream time (Kafka Streams has no such thing).
	b.WriteString("idle_timeout: 24h\n")
	return b.String()
}

// startSystem starts eddy or the Kafka Streams peer on the pipeline. For
// eddy it returns the /readyz URL.
func startSystem(e *env, sys string, pl pipeline, app, input, output, name string, extra map[string]string) (*proc, string, error) {
	state := filepath.Join(e.work, "state-"+app)
	switch sys {
	case sysEddy:
		specFile := filepath.Join(e.work, app+".yaml")
		if err := os.WriteFile(specFile, []byte(eddySpec(pl, app, input, output)), 0o644); err != nil {
			return nil, "", err
		}
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		var penv []string
		if e.profileDir != "" {
			penv = []string{"EDDY_CPUPROFILE=" + filepath.Join(e.profileDir, name+".cpu.pprof"),
				"EDDY_MEMPROFILE=" + filepath.Join(e.profileDir, name+".alloc.pprof")}
		}
		p, err := startProc(e, name, []string{e.eddyBin, "run", "-f", specFile, "--brokers", e.brokers,
			"--state-dir", state, "--http-addr", addr, "--registry-url", e.registry,
			"--session-timeout", "6s", "--memory-limit", "0", "--log-level", "warn"}, "", penv...)
		return p, "http://" + addr + "/readyz", err
	case sysGoka:
		p, err := startProc(e, name, []string{e.gokaBin, "bootstrap=" + e.brokers, "input=" + input, "output=" + output,
			"app=" + app, "state=" + state, "schema=" + e.schema, "window_ms=" + strconv.FormatInt(pl.windowMs, 10),
			"grace_ms=" + strconv.FormatInt(pl.graceMs, 10), "commit_ms=" + strconv.FormatInt(pl.commitMs, 10)}, "")
		return p, "", err
	default:
		args := []string{e.java, "-Xms256m", "-Xmx1g", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", e.ksCP, "EddyPeer", pl.mode,
			"bootstrap=" + e.brokers, "input=" + input, "output=" + output, "app=" + app, "state=" + state,
			"guarantee=" + pl.guarantee, "commit_ms=" + strconv.FormatInt(pl.commitMs, 10),
			"window_ms=" + strconv.FormatInt(pl.windowMs, 10), "grace_ms=" + strconv.FormatInt(pl.graceMs, 10),
			"cache_bytes=" + strconv.FormatInt(ksCacheBytes, 10)}
		for k, v := range extra {
			args = append(args, k+"="+v)
		}
		p, err := startProc(e, name, args, "K")
		return p, "", err
	}
}

// ksCacheBytes is Kafka Streams' statestore.cache.max.bytes: 100 MiB, about
// what eddy's row cache holds for the 100k-key workload (rows of ~1 KiB,
// bounded at 100k clean rows per task; dirty rows stay until the commit).
const ksCacheBytes = 100 << 20

// cleanupApp deletes the topics of one run (the app's internal topics and
// its output) and its local state.
func cleanupApp(ctx context.Context, e *env, app, output string) {
	_ = os.RemoveAll(filepath.Join(e.work, "state-"+app))
	topics, err := e.adm.ListTopics(ctx)
	if err != nil {
		return
	}
	var del []string
	for _, t := range topics.Names() {
		if strings.HasPrefix(t, app+"-") || t == output {
			del = append(del, t)
		}
	}
	if len(del) > 0 {
		_, _ = e.adm.DeleteTopics(ctx, del...)
	}
}

// runThroughput runs one system over a pre-loaded topic until it has
// processed all of it. It also returns what the run emitted for a sample of
// its (key, window) results, for the agreement check between the systems.
func runThroughput(ctx context.Context, e *env, wl, sys string, rep int, pl pipeline, d dataset) (Result, resultSample, error) {
	app := fmt.Sprintf("b-%s-%s-%d", wl, sys, rep)
	output := app + "-out"
	defer cleanupApp(ctx, e, app, output)
	if err := createTopic(ctx, e.adm, output, partitions, nil); err != nil {
		return Result{}, nil, err
	}
	p, _, err := startSystem(e, sys, pl, app, d.Topic(), output, app, nil)
	if err != nil {
		return Result{}, nil, err
	}
	defer p.stop()
	stage := d.Topic()
	if pl.mode == "filter" {
		stage = app + "-repartition" // eddy's <app>-repartition
		if sys == sysKS {
			stage = app + "-rekey-repartition"
		}
	}
	tp, err := measure(ctx, e, p, app, d.Topic(), stage, int64(d.Records), 20*time.Minute)
	if err != nil {
		return Result{}, nil, err
	}
	var outs int64
	if ends, err := e.adm.ListEndOffsets(ctx, output); err == nil {
		ends.Each(func(o kadm.ListedOffset) { outs += o.Offset })
	}
	sample, err := windowHistogram(ctx, e, output, filepath.Join(e.logDir, app+".windows.txt"))
	if err != nil {
		say("window histogram of %s: %v", output, err)
	}
	return Result{Workload: wl, System: sys, Rep: rep, Records: tp.Records, Seconds: tp.Seconds, Rate: tp.Rate,
		CPUPerM: tp.CPUPerM, PeakRSS: tp.PeakRSSMiB, Startup: tp.StartupSec, Outputs: outs,
		SteadyRate: tp.SteadyRate, SteadyCPUPerM: tp.SteadyCPUPerM}, sample, nil
}

var consumedRE = regexp.MustCompile(`CONSUMED records=(\d+) bytes=(\d+) seconds=([0-9.]+)`)

// runConsume is the consume-only ceiling: franz-go (this binary's consume
// command) or Kafka's Java consumer, reading the whole topic.
func runConsume(ctx context.Context, e *env, sys string, rep int, d dataset) (Result, error) {
	self, err := os.Executable()
	if err != nil {
		return Result{}, err
	}
	argv := []string{self, "consume", e.brokers, d.Topic()}
	if sys == sysJavaCon {
		argv = []string{e.java, "-Xms256m", "-Xmx1g", "-cp", e.ksCP, "EddyPeer", "consume", "bootstrap=" + e.brokers, "input=" + d.Topic()}
	}
	name := fmt.Sprintf("consume-%s-%d", sys, rep)
	p, err := startProc(e, name, argv, "CONSUMED")
	if err != nil {
		return Result{}, err
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Minute):
		p.stop()
		return Result{}, fmt.Errorf("%s: not done after 10m", name)
	case <-ctx.Done():
		p.stop()
		return Result{}, ctx.Err()
	}
	lines := p.watched()
	if len(lines) == 0 {
		return Result{}, fmt.Errorf("%s printed no result (%v); see its log", name, p.waitErr)
	}
	m := consumedRE.FindStringSubmatch(lines[0])
	if m == nil {
		return Result{}, fmt.Errorf("%s: cannot parse %q", name, lines[0])
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	secs, _ := strconv.ParseFloat(m[3], 64)
	cpu := p.cpuSeconds()
	return Result{Workload: "consume", System: sys, Rep: rep, Records: n, Seconds: secs, Rate: float64(n) / secs,
		CPUPerM: cpu / float64(n) * 1e6, PeakRSS: p.peakRSSMiB(), Note: "CPU includes process start-up"}, nil
}

// waitReady waits until eddy answers /readyz, or the peer has printed
// KSTATE RUNNING (and KRESTORED when restoring), and returns when that was.
func waitReady(ctx context.Context, p *proc, sys, readyURL string, restoring bool, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return time.Time{}, fmt.Errorf("%s exited (%v)", p.name, p.waitErr)
		}
		if sys == sysEddy {
			if resp, err := http.Get(readyURL); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Now(), nil
				}
			}
		} else {
			var running, restored time.Time
			for _, l := range p.watched() {
				f := strings.Fields(l)
				if len(f) < 2 {
					continue
				}
				ms, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
				switch f[0] {
				case "KSTATE":
					if f[1] == "RUNNING" {
						running = time.UnixMilli(ms)
					}
				case "KRESTORED":
					ms, _ = strconv.ParseInt(f[1], 10, 64)
					restored = time.UnixMilli(ms)
				}
			}
			if !running.IsZero() && (!restoring || !restored.IsZero()) {
				if restored.After(running) {
					return restored, nil
				}
				return running, nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Time{}, fmt.Errorf("%s not ready within %s", p.name, timeout)
}

// runRestore builds a changelog of d.Keys keys (each key once, in a window
// that cannot close), stops, then starts again reps times with no local
// state, timing process start to ready.
func runRestore(ctx context.Context, e *env, sys string, reps int, d dataset) ([]Result, error) {
	app := "b-restore-" + sys
	output := app + "-out"
	defer cleanupApp(ctx, e, app, output)
	if err := createTopic(ctx, e.adm, output, partitions, nil); err != nil {
		return nil, err
	}
	day := int64(24 * time.Hour / time.Millisecond)
	pl := pipeline{mode: "count", windowMs: day, graceMs: day, commitMs: 1000, guarantee: "at_least_once"}
	p, _, err := startSystem(e, sys, pl, app, d.Topic(), output, app+"-build", nil)
	if err != nil {
		return nil, err
	}
	tp, err := measure(ctx, e, p, app, d.Topic(), d.Topic(), int64(d.Records), 20*time.Minute)
	p.stop()
	if err != nil {
		return nil, err
	}
	out := []Result{{Workload: "restore-build", System: sys, Records: tp.Records, Seconds: tp.Seconds, Rate: tp.Rate,
		CPUPerM: tp.CPUPerM, PeakRSS: tp.PeakRSSMiB, Note: fmt.Sprintf("building the %d-key changelog: every record a new key", d.Keys)}}
	ends, err := e.adm.ListEndOffsets(ctx, app+"-windows-changelog")
	if err != nil {
		return out, err
	}
	var clog int64
	ends.Each(func(o kadm.ListedOffset) { clog += o.Offset })
	for rep := 1; rep <= reps; rep++ {
		_ = os.RemoveAll(filepath.Join(e.work, "state-"+app))
		p, readyURL, err := startSystem(e, sys, pl, app, d.Topic(), output, fmt.Sprintf("%s-restore-%d", app, rep),
			map[string]string{"restore_parts": strconv.Itoa(partitions)})
		if err != nil {
			return out, err
		}
		at, err := waitReady(ctx, p, sys, readyURL, true, 10*time.Minute)
		cpu := p.cpuSeconds()
		hwm := p.peakRSSMiB()
		p.stop()
		if err != nil {
			return out, err
		}
		secs := at.Sub(p.started).Seconds()
		out = append(out, Result{Workload: "restore", System: sys, Rep: rep, ReadySec: secs, Changelog: clog,
			RestoreRate: float64(clog) / secs, CPUPerM: cpu / float64(clog) * 1e6, PeakRSS: hwm})
	}
	return out, nil
}

// runLatency offers rate records/s (event time = creation time) for dur to a
// fresh topic and measures, per emitted update, the output's append time
// (LogAppendTime) minus the newest event time it contains.
func runLatency(ctx context.Context, e *env, wl, sys string, rep, rate int, dur time.Duration, keys int) (Result, error) {
	app := fmt.Sprintf("b-%s-%s-%d", wl, sys, rep)
	input, output := app+"-in", app+"-out"
	defer func() {
		cleanupApp(ctx, e, app, output)
		_, _ = e.adm.DeleteTopics(ctx, input)
	}()
	if err := createTopic(ctx, e.adm, input, partitions, nil); err != nil {
		return Result{}, err
	}
	lat := "LogAppendTime"
	if err := createTopic(ctx, e.adm, output, partitions, map[string]*string{"message.timestamp.type": &lat}); err != nil {
		return Result{}, err
	}
	pl := pipeline{mode: "latency", windowMs: 10_000, graceMs: 0, commitMs: latencyCommitMs, guarantee: "at_least_once"}
	var p *proc
	if sys == sysPass {
		self, err := os.Executable()
		if err != nil {
			return Result{}, err
		}
		if p, err = startProc(e, app, []string{self, "passthrough", e.brokers, input, output}, "PASSTHROUGH"); err != nil {
			return Result{}, err
		}
		defer p.stop()
		for len(p.watched()) == 0 {
			if p.exited() {
				return Result{}, fmt.Errorf("%s exited (%v)", app, p.waitErr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	} else {
		var readyURL string
		var err error
		if p, readyURL, err = startSystem(e, sys, pl, app, input, output, app, nil); err != nil {
			return Result{}, err
		}
		defer p.stop()
		if _, err := waitReady(ctx, p, sys, readyURL, false, 2*time.Minute); err != nil {
			return Result{}, err
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers), kgo.ConsumeTopics(output),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()
	start := time.Now()
	warm := start.Add(5 * time.Second).UnixMilli()
	var (
		mu   sync.Mutex
		lats []float64
	)
	cctx, cancel := context.WithCancel(ctx)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for cctx.Err() == nil {
			fs := cl.PollFetches(cctx)
			fs.EachRecord(func(r *kgo.Record) {
				var v struct {
					LastTS float64 `json:"last_ts"`
				}
				if sys == sysPass {
					ts, ok := eventTime(r.Value)
					if !ok {
						return
					}
					v.LastTS = float64(ts)
				} else if json.Unmarshal(r.Value, &v) != nil {
					return
				}
				if int64(v.LastTS) < warm {
					return
				}
				mu.Lock()
				lats = append(lats, float64(r.Timestamp.UnixMilli()-int64(v.LastTS)))
				mu.Unlock()
			})
		}
	}()
	cpu0 := p.cpuSeconds()
	sent, err := openLoop(ctx, e, input, rate, dur, keys)
	if err != nil {
		cancel()
		<-consumed
		return Result{}, err
	}
	time.Sleep(2 * time.Second)
	cpu := p.cpuSeconds() - cpu0
	cancel()
	<-consumed
	mu.Lock()
	defer mu.Unlock()
	if len(lats) == 0 {
		return Result{}, fmt.Errorf("%s: no results after the warm-up", app)
	}
	sort.Float64s(lats)
	return Result{Workload: wl, System: sys, Rep: rep, Records: sent, Seconds: dur.Seconds(), OfferedRate: float64(rate),
		P50: quantile(lats, 0.5), P99: quantile(lats, 0.99), P999: quantile(lats, 0.999), Samples: len(lats),
		CPUPerM: cpu / float64(sent) * 1e6, PeakRSS: p.peakRSSMiB()}, nil
}

// latencyCommitMs is the commit interval of the latency workload, both
// systems: with emit on update, results leave at each commit.
const latencyCommitMs = 20

func quantile(sorted []float64, q float64) float64 {
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// windowHistogram writes how many results each window_start has on the
// output topic: the check that both systems emitted the same windows. It
// also returns the results of a sample of the keys (see inSample).
func windowHistogram(ctx context.Context, e *env, topic, file string) (resultSample, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := e.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	var want, n int64
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	counts := map[string]int{}
	sample := resultSample{}
	var bad int
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for n < want && cctx.Err() == nil {
		// Under exactly-once the end offsets count transaction markers,
		// which are never returned: stop when nothing more comes.
		pctx, pcancel := context.WithTimeout(cctx, 3*time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if fs.NumRecords() == 0 && pctx.Err() != nil {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			v := string(r.Value)
			if i := strings.Index(v, `"window_start":"`); i >= 0 {
				v = v[i+len(`"window_start":"`):]
				if j := strings.IndexByte(v, '"'); j >= 0 {
					counts[v[:j]]++
				}
			}
			if inSample(r.Key) && sample.add(r.Key, r.Value) != nil {
				bad++
			}
		})
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %d\n", k, counts[k])
	}
	if bad > 0 {
		fmt.Fprintf(&b, "# %d sampled results could not be parsed\n", bad)
	}
	return sample, os.WriteFile(file, []byte(b.String()), 0o644)
}
