package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/deploy/pipelines"
	"github.com/eddy-streams/eddy/internal/generator"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/processor/console"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

func demoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run eddy's example pipeline on an embedded Kafka with generated HTTP request events",
		Long: `Run the bundled pipeline (deploy/pipelines/http-requests.yaml: three rollups
of one read: per-endpoint request count, error count and p50/p99 latency per
10-second window; the same per minute, merged from the 10-second results; and
requests per service and status class per minute) on an embedded Kafka, fed by
a generator of realistic HTTP request events (with some out-of-order and some
late ones). Each final window result of every rollup is printed as it closes,
with the rollup's name. Kafka data and eddy state live under --data-dir, so a
second demo resumes where the first stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dur, _ := cmd.Flags().GetDuration("duration")
			asJSON, _ := cmd.Flags().GetBool("json")
			rate, _ := cmd.Flags().GetInt("rate")
			avroFmt, _ := cmd.Flags().GetBool("avro")
			dir, _ := cmd.Flags().GetString("data-dir")
			level := flagString(cmd, "log-level")
			if !cmd.Flags().Changed("log-level") && os.Getenv("EDDY_LOG_LEVEL") == "" {
				level = "warn"
			}
			log, err := newLogger(level)
			if err != nil {
				return err
			}
			hsec, err := httpSecurityOpts(cmd)
			if err != nil {
				return err
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), log, demoOptions{
				dataDir: dir, duration: dur, json: asJSON, rate: rate, avro: avroFmt,
				httpAddr: flagString(cmd, "http-addr"), http: hsec,
			})
		},
	}
	home, _ := os.UserHomeDir()
	cmd.Flags().String("data-dir", filepath.Join(home, ".eddy", "demo"), "Where the embedded Kafka and eddy keep their data")
	cmd.Flags().Duration("duration", 0, "Stop after this long and exit 0 (0: run until Ctrl-C)")
	cmd.Flags().Bool("json", false, "Print one JSON object per output record instead of readable lines")
	cmd.Flags().Int("rate", 200, "Generated events per second")
	cmd.Flags().Bool("avro", false, "Produce the events as Avro (Confluent wire format, schema in the embedded registry) and write results and alerts as Avro")
	addSettings(cmd, "http-addr", "log-level")
	addSettings(cmd, httpSettings...)
	cmd.Flags().Lookup("http-addr").DefValue = demoHTTPAddr + " (a free port if it is taken)"
	_ = cmd.Flags().Set("http-addr", envOr("EDDY_HTTP_ADDR", ""))
	return cmd
}

// demoHTTPAddr is where the demo serves its console (and health and
// metrics) by default: a fixed address, so the README can show it.
const demoHTTPAddr = "127.0.0.1:8080"

// demoRegistryHint is the command the demo's banner suggests for its
// registry; TestDocCommandsParse checks that it parses.
func demoRegistryHint(url string) string {
	return "eddy schema list --registry-url " + url
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

type demoOptions struct {
	dataDir  string
	duration time.Duration
	json     bool
	rate     int
	avro     bool
	httpAddr string
	http     httpSecurity
}

func runDemo(ctx context.Context, out io.Writer, log *slog.Logger, o demoOptions) error {
	spec, err := topology.Parse(pipelines.HTTPRequests)
	if err != nil {
		return fmt.Errorf("bundled pipeline: %w", err)
	}
	if o.avro {
		spec.Source.Format, spec.Source.Subject = topology.FormatAvro, spec.Source.Topics[0]+"-value"
		if spec.MultiRollup() {
			for i := range spec.Rollups {
				spec.Rollups[i].Output.Format = topology.FormatAvro
			}
		} else {
			spec.Output.Format = topology.FormatAvro
		}
		if err := spec.Validate(); err != nil {
			return fmt.Errorf("bundled pipeline in Avro: %w", err)
		}
	}
	// The whole data directory (embedded Kafka and eddy state) belongs to
	// one demo: a second demo on it stops here, having touched nothing.
	lock, err := state.LockDir(o.dataDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	// Listen first, so that the banner's first line is the console's
	// address: demoHTTPAddr unless --http-addr says otherwise, a free port
	// when another process (another demo) has it.
	var ln net.Listener
	protected := o.http.token != nil
	if o.httpAddr == "" {
		if ln, err = o.http.listen(demoHTTPAddr, protected); err != nil {
			ln, err = o.http.listen("127.0.0.1:0", protected)
		}
	} else {
		ln, err = o.http.listen(o.httpAddr, protected)
	}
	if err != nil {
		return err
	}
	defer ln.Close()
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.DataDir(filepath.Join(o.dataDir, "kafka")),
		kfake.SeedTopics(3, spec.Source.Topics...),
	)
	if err != nil {
		return fmt.Errorf("start embedded Kafka: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	fmt.Fprintf(os.Stderr, "eddy demo: console at %s://%s/console/ (results, alerts and live tails in the browser)\n", o.http.scheme(), ln.Addr())
	fmt.Fprintf(os.Stderr, "eddy demo: embedded Kafka at %s, data in %s\n", strings.Join(brokers, ","), o.dataDir)
	// eddy's schema registry, on the embedded Kafka's _schemas topic.
	regURL, stopRegistry, err := startDemoRegistry(ctx, brokers)
	if err != nil {
		return fmt.Errorf("start the embedded schema registry: %w", err)
	}
	defer stopRegistry()
	fmt.Fprintf(os.Stderr, "eddy demo: schema registry at %s (try: %s)\n", regURL, demoRegistryHint(regURL))
	// The demo's registry is its own, on loopback, without credentials.
	demoReg := &registryConn{url: regURL, rt: http.DefaultTransport.(*http.Transport).Clone()}
	demoReg.owned = demoReg.rt.(*http.Transport)
	defer demoReg.close()
	reg := demoReg.client()
	var enc *schema.Encoder
	if o.avro {
		if enc, err = schema.NewEncoder(ctx, reg, spec.Source.Subject, generator.AvroSchema); err != nil {
			return fmt.Errorf("register the events' schema: %w", err)
		}
	}
	for _, line := range demoBanner(spec) {
		fmt.Fprintln(os.Stderr, line)
	}

	// The example runbooks, about the demo's traffic, in the data
	// directory (saves stay there), served by the console.
	rbDir := filepath.Join(o.dataDir, "runbooks")
	if err := installDemoRunbooks(rbDir); err != nil {
		return fmt.Errorf("install the demo's runbooks: %w", err)
	}
	rbs, err := console.NewRunbooks(console.RunbooksConfig{
		Dir: rbDir, Brokers: brokers, Registry: reg, Logger: log, NewEngine: previewEngine(reg, []kgo.Opt{kgo.SeedBrokers(brokers...)}),
		RunCommand: "--brokers " + strings.Join(brokers, ","),
	})
	if err != nil {
		return err
	}
	defer rbs.Close()
	fmt.Fprintf(os.Stderr, "eddy demo: runbooks at %s://%s/console/runbook.html (files in %s)\n", o.http.scheme(), ln.Addr(), rbDir)

	runStart := time.Now()
	tally := &demoTally{runStart: runStart}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := generate(ctx, brokers, spec.Source.Topics[0], o.rate, true, enc); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("generator: %w", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		var dec *schema.Decoder
		if o.avro {
			dec = schema.NewDecoder(reg)
		}
		if err := printResults(ctx, out, brokers, spec, o.json, dec, tally); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("printer: %w", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		err := runPipeline(ctx, log, spec, runOptions{
			brokers: brokers, stateDir: filepath.Join(o.dataDir, "state"), httpAddr: o.httpAddr, http: o.http, listener: ln,
			sessionTimeout: 10 * time.Second, registry: demoReg, runbooks: rbs,
		}, func(_ *processor.App, addr string) {
			fmt.Fprintf(os.Stderr, "eddy demo: health and metrics on %s://%s (/healthz /readyz /metrics)\n", o.http.scheme(), addr)
		})
		if err != nil {
			errs <- err
		}
		cancel()
	}()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	// wg.Wait orders the printer's writes to tally before this read.
	fmt.Fprintln(os.Stderr, tally.summary(spec.App, time.Since(runStart), o.dataDir))
	return nil
}

// demoBanner says what the demo runs: the pipeline, and each rollup's
// windows, key and output topic.
func demoBanner(spec *topology.Spec) []string {
	rollup := func(rs *topology.Spec) string {
		w := fmt.Sprintf("%s %s windows", shortDuration(rs.Window.Size), rs.Window.Type)
		if rs.From != "" {
			return fmt.Sprintf("%s merged from %s's results, per %s -> topic %s", w, rs.From, strings.Join(rs.Key, "+"), rs.Output.Topic)
		}
		return fmt.Sprintf("%s (grace %s) per %s -> topic %s", w, shortDuration(rs.Window.Grace), strings.Join(rs.Key, "+"), rs.Output.Topic)
	}
	if !spec.MultiRollup() {
		return []string{fmt.Sprintf("eddy demo: pipeline %q: %s", spec.App, rollup(spec))}
	}
	specs := spec.RollupSpecs()
	out := []string{fmt.Sprintf("eddy demo: pipeline %q: %d rollups of one read of %s, each result printed with its rollup:",
		spec.App, len(specs), strings.Join(spec.Source.Topics, ", "))}
	width := 0
	for _, rs := range specs {
		width = max(width, len(rs.RollupName))
	}
	for _, rs := range specs {
		out = append(out, fmt.Sprintf("eddy demo:   %-*s  %s", width, rs.RollupName, rollup(rs)))
	}
	return out
}

// shortDuration writes d as the pipeline file does: 1m, not 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	s, _ = strings.CutSuffix(s, "m0s")
	if len(s) < len(d.String()) {
		s += "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// demoTally counts what the demo printed, for the line it ends with.
type demoTally struct {
	runStart         time.Time
	results          int
	firing, resolved int
	// An absence alert that fires in this run for a silence that began
	// before it is about the time the demo was down (no traffic reached
	// the pipeline): downtime holds those (rule and key) until resolved.
	downtime                         map[string]bool
	downtimeFiring, downtimeResolved int
}

// count records one printed alert.
func (t *demoTally) count(a processor.Alert) {
	if a.State == "firing" {
		t.firing++
	} else {
		t.resolved++
	}
	if a.RuleKind != topology.AlertAbsence {
		return
	}
	id := fmt.Sprint(a.Rule, a.Key)
	started, err := time.Parse(time.RFC3339, a.StartedAt)
	switch {
	case a.State == "firing" && err == nil && started.Before(t.runStart):
		if t.downtime == nil {
			t.downtime = map[string]bool{}
		}
		t.downtime[id] = true
		t.downtimeFiring++
	case a.State != "firing" && t.downtime[id]:
		// Resolved alerts whose firing an earlier run printed (a real
		// incident of that run) are not about the downtime.
		delete(t.downtime, id)
		t.downtimeResolved++
	}
}

// summary is the demo's last line: what ran, what it printed, where its
// data stays, and whether some alerts were about the time it was down.
func (t *demoTally) summary(app string, ran time.Duration, dataDir string) string {
	s := fmt.Sprintf("eddy demo: ran pipeline %q for %s: printed %d results and %d alerts (%d firing, %d resolved); "+
		"data stays in %s (the next demo resumes from it; delete it to start afresh)",
		app, ran.Round(time.Second), t.results, t.firing+t.resolved, t.firing, t.resolved, dataDir)
	if n := t.downtimeFiring + t.downtimeResolved; n > 0 {
		s += fmt.Sprintf("; %d of the alerts (%d firing, %d resolved) are absence alerts for the time the demo was not running "+
			"(no traffic reached the pipeline while it was down), not incidents of this run", n, t.downtimeFiring, t.downtimeResolved)
	}
	return s
}

// Alert lines are printed in time order: alerts of several partitions
// (and a resumed demo's burst of absence alerts for its downtime) arrive
// in partition order, so the printer holds them until the alerts topic has
// been quiet for alertQuiet (or the oldest has waited alertHold) and
// prints them sorted by their time.
const (
	alertQuiet = 500 * time.Millisecond
	alertHold  = 2 * time.Second
)

// printResults prints each result record on the rollups' output topics,
// starting at their current end (so a resumed demo prints only new
// windows), and the alerts of their alerts topics, and counts what it
// printed in tally.
func printResults(ctx context.Context, out io.Writer, brokers []string, spec *topology.Spec, asJSON bool, dec *schema.Decoder, tally *demoTally) error {
	var topics []string
	outputs, alerts := map[string]*demoRollup{}, map[string]*demoRollup{}
	specs := spec.RollupSpecs()
	width := 0
	for _, rs := range specs {
		width = max(width, len(rs.RollupName))
	}
	for _, rs := range specs {
		r := &demoRollup{spec: rs, multi: spec.MultiRollup(), width: width}
		outputs[rs.Output.Topic] = r
		topics = append(topics, rs.Output.Topic)
		if t := rs.AlertsTopic(); t != "" {
			alerts[t] = r
			topics = append(topics, t)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	type heldAlert struct {
		at    time.Time
		a     processor.Alert
		value []byte
		r     *demoRollup
	}
	var held []heldAlert
	var firstHeld, lastHeld time.Time
	flush := func() error {
		sort.SliceStable(held, func(i, j int) bool { return held[i].at.Before(held[j].at) })
		for _, h := range held {
			if err := printAlert(out, h.value, h.r, asJSON); err != nil {
				return err
			}
			tally.count(h.a)
		}
		held = held[:0]
		return nil
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, alertQuiet/2)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return flush()
		}
		var line error
		fs.EachRecord(func(r *kgo.Record) {
			if line != nil {
				return
			}
			value := r.Value
			ar, isAlert := alerts[r.Topic]
			rr := outputs[r.Topic]
			if isAlert {
				rr = ar
			}
			if rr == nil {
				return
			}
			if dec != nil {
				if value, line = avroToJSON(ctx, dec, value, rr.spec, isAlert); line != nil {
					return
				}
			}
			if isAlert {
				var a processor.Alert
				if err := json.Unmarshal(value, &a); err != nil {
					line = fmt.Errorf("alert record is not JSON: %w", err)
					return
				}
				at, _ := time.Parse(time.RFC3339, a.At)
				if len(held) == 0 {
					firstHeld = time.Now()
				}
				lastHeld = time.Now()
				held = append(held, heldAlert{at, a, value, ar})
				return
			}
			if line = printResult(out, value, rr, asJSON); line == nil {
				tally.results++
			}
		})
		if line != nil {
			return line
		}
		if len(held) > 0 && (time.Since(lastHeld) >= alertQuiet || time.Since(firstHeld) >= alertHold) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// demoRollup is what the printer knows of one rollup: its spec (one of
// RollupSpecs), and how wide the rollup column of readable lines is.
type demoRollup struct {
	spec  *topology.Spec
	multi bool // the pipeline has several rollups: lines name theirs
	width int
}

// column is the rollup's column of a readable line: its name, padded, and
// two spaces; "" in a pipeline of one rollup.
func (r *demoRollup) column() string {
	if !r.multi {
		return ""
	}
	return fmt.Sprintf("%-*s  ", r.width, r.spec.RollupName)
}

// printResult prints one result of rollup r: a line with its window,
// rollup, key and aggregates, or with --json the result object with
// "kind": "result" and, in a pipeline of several rollups, "rollup".
func printResult(out io.Writer, value []byte, r *demoRollup, asJSON bool) error {
	spec := r.spec
	var m map[string]any
	if err := json.Unmarshal(value, &m); err != nil {
		return fmt.Errorf("output record is not JSON: %w", err)
	}
	if asJSON {
		m["kind"] = "result"
		if r.multi {
			m["rollup"] = spec.RollupName
		}
		b, _ := json.Marshal(m)
		_, err := fmt.Fprintln(out, string(b))
		return err
	}
	start, _ := time.Parse(time.RFC3339, fmt.Sprint(m["window_start"]))
	end, _ := time.Parse(time.RFC3339, fmt.Sprint(m["window_end"]))
	key, _ := m["key"].(map[string]any)
	var kparts []string
	for _, f := range spec.Key {
		kparts = append(kparts, fmt.Sprint(key[f]))
	}
	var aggs []string
	names := make([]string, 0, len(spec.Aggregates))
	for _, a := range spec.Aggregates {
		names = append(names, a.Name)
	}
	for _, n := range names {
		v := m[n]
		if f, ok := v.(float64); ok {
			aggs = append(aggs, fmt.Sprintf("%s=%s", n, strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")))
		} else {
			aggs = append(aggs, fmt.Sprintf("%s=-", n))
		}
	}
	_, err := fmt.Fprintf(out, "%s-%s  %s%-28s %s\n", start.Local().Format("15:04:05"), end.Local().Format("15:04:05"),
		r.column(), strings.Join(kparts, " "), strings.Join(aggs, " "))
	return err
}

// printAlert prints one alert transition of rollup r: a line starting
// with the time and ALERT, or with --json the alert object with "kind":
// "alert" and, in a pipeline of several rollups, "rollup".
func printAlert(out io.Writer, value []byte, r *demoRollup, asJSON bool) error {
	var a processor.Alert
	if err := json.Unmarshal(value, &a); err != nil {
		return fmt.Errorf("alert record is not JSON: %w", err)
	}
	if asJSON {
		var m map[string]any
		_ = json.Unmarshal(value, &m)
		m["kind"] = "alert"
		if r.multi {
			m["rollup"] = r.spec.RollupName
		}
		b, _ := json.Marshal(m)
		_, err := fmt.Fprintln(out, string(b))
		return err
	}
	at, _ := time.Parse(time.RFC3339, a.At)
	_, err := fmt.Fprintf(out, "%s  ALERT %-8s %-16s %s\n", at.Local().Format("15:04:05"), a.State, a.Rule, a.Summary)
	return err
}

// avroToJSON decodes an Avro result or alert and renders it as eddy's JSON
// output would be (times in RFC 3339, results with their key object);
// spec is the rollup's (one of RollupSpecs).
func avroToJSON(ctx context.Context, dec *schema.Decoder, value []byte, spec *topology.Spec, alert bool) ([]byte, error) {
	m, err := dec.Decode(ctx, value)
	if err != nil {
		return nil, fmt.Errorf("decode an Avro output record: %w", err)
	}
	for k, v := range m {
		if t, ok := v.(time.Time); ok {
			m[k] = t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		}
	}
	if !alert {
		key := make(map[string]any, len(spec.Key))
		for _, f := range spec.Key {
			key[f] = m[f]
		}
		m["key"] = key
	}
	return json.Marshal(m)
}

// startDemoRegistry serves eddy's schema registry on a free loopback port,
// stored in the _schemas topic of brokers.
func startDemoRegistry(ctx context.Context, brokers []string) (url string, stop func(), err error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return "", nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	srv, err := schema.NewServer(sctx, cl, schema.DefaultTopic)
	cancel()
	if err != nil {
		cl.Close()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cl.Close()
		return "", nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { _ = hs.Serve(ln); close(done) }()
	return "http://" + ln.Addr().String(), func() {
		shctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(shctx)
		<-done
		cl.Close()
	}, nil
}
