package eddytest

// The Kafka mode: a case's inputs produced to fresh topics of a real
// cluster, the pipeline run as a consumer-group member (processor.App, as
// `eddy run` runs it) with the case's wall clock, and its outputs read back.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// KafkaConfig is where and how the Kafka mode runs.
type KafkaConfig struct {
	Brokers []string
	// ClientOpts are extra franz-go options (TLS, SASL).
	ClientOpts []kgo.Opt
	// Registry is the schema registry of Avro pipelines (required for
	// them).
	Registry schema.Registry
	// Logger receives the App's log. Default: discarded.
	Logger *slog.Logger
	// Timeout bounds each wait for the App (joining the group, processing
	// a step). Default 60s.
	Timeout time.Duration
	// Keep leaves the case's topics on the cluster. Default false: they
	// are deleted at the end.
	Keep bool
	// KeepNames runs the pipeline with its own app id and topics instead
	// of fresh ones: the caller makes sure they are unused (tests that
	// compare bytes, topic names in headers included).
	KeepNames bool
}

// kafkaClock is the App's wall clock in the Kafka mode: the case's, moved
// by the runner only.
type kafkaClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *kafkaClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *kafkaClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// KafkaRun is one run of a pipeline on a real cluster (RunKafka). Its
// names are unique: the app id and every topic carry a random suffix.
type KafkaRun struct {
	// Spec is the pipeline as run: with the fresh app id and topics, and
	// processing at_least_once (see RunKafka).
	Spec   *topology.Spec
	suffix string
}

// Rename returns the topic the run uses for a topic of the pipeline.
func (r *KafkaRun) Rename(topic string) string {
	if r.suffix == "" {
		return topic
	}
	return topic + "-" + r.suffix
}

// original maps a topic of the run back to the pipeline's.
func (r *KafkaRun) original(topic string) string {
	if r.suffix == "" {
		return topic
	}
	return strings.TrimSuffix(topic, "-"+r.suffix)
}

// NewKafkaRun prepares a run of spec with fresh names (the same names
// when keepNames).
func NewKafkaRun(spec *topology.Spec, keepNames bool) *KafkaRun {
	r := &KafkaRun{}
	if !keepNames {
		var b [4]byte
		_, _ = rand.Read(b[:])
		r.suffix = "t" + hex.EncodeToString(b[:])
	}
	s := *spec
	s.App = r.Rename(spec.App)
	s.Source.Topics = nil
	for _, t := range spec.Source.Topics {
		s.Source.Topics = append(s.Source.Topics, r.Rename(t))
	}
	s.Output.Topic = r.Rename(spec.Output.Topic)
	s.LateTopic = r.Rename(spec.LateTopic)
	s.DeadLetterTopic = r.Rename(spec.DeadLetterTopic)
	if spec.Alerts != nil {
		a := *spec.Alerts
		a.Topic = r.Rename(spec.Alerts.Topic)
		s.Alerts = &a
	}
	// Each rollup's output and alerts topics; its store and repartition
	// topic follow the app id.
	s.Rollups = slices.Clone(spec.Rollups)
	for i, ro := range s.Rollups {
		s.Rollups[i].Output.Topic = r.Rename(ro.Output.Topic)
		if ro.Alerts != nil {
			a := *ro.Alerts
			a.Topic = r.Rename(ro.Alerts.Topic)
			s.Rollups[i].Alerts = &a
		}
	}
	// Under exactly_once, records forwarded through the repartition
	// topic are readable only once their transaction commits, which
	// takes the wall clock moving by commit_interval; the kit's clock
	// moves only at the case's steps. Without failures both modes give
	// the same results.
	s.Processing = topology.AtLeastOnce
	r.Spec = &s
	return r
}

// RunKafka runs the case on the cluster of cfg: it creates the source
// topics (fresh names, the case's partitions), runs the pipeline as a
// group member (processor.App, with the case's wall clock), produces each
// step's records and waits until the App has processed them, moves the
// App's clock at each wall-clock step, stops the App (its final commit,
// as `eddy run` stopping) and reads what it wrote. Topic names in the
// outcome are the pipeline's.
func (c *Case) RunKafka(ctx context.Context, spec *topology.Spec, cfg KafkaConfig) (*Outcome, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("eddytest: KafkaConfig.Brokers is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	start, err := c.start()
	if err != nil {
		return nil, err
	}
	run := NewKafkaRun(spec, cfg.KeepNames)
	rs := run.Spec
	if usesAvro(spec) && cfg.Registry == nil {
		return nil, errors.New("the pipeline reads or writes Avro: the Kafka mode needs a schema registry (--registry-url)")
	}
	enc, err := c.avroEncoder(ctx, spec, cfg.Registry, run.Rename)
	if err != nil {
		return nil, err
	}
	acts, err := c.plan(spec, enc)
	if err != nil {
		return nil, err
	}
	conn := slices.Clip(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...))
	cl, err := kgo.NewClient(append(conn, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	parts := max(1, c.Partitions)
	created := append([]string(nil), rs.Source.Topics...)
	if !cfg.Keep {
		defer func() {
			for _, ti := range rs.Topics(int32(parts)) {
				created = append(created, ti.Name)
			}
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = adm.DeleteTopics(dctx, created...)
			_, _ = adm.DeleteGroup(dctx, rs.GroupID())
		}()
	}
	for _, t := range rs.Source.Topics {
		if err := createTopic(ctx, adm, t, int32(parts), cfg.Timeout); err != nil {
			return nil, err
		}
	}

	dir, err := os.MkdirTemp("", "eddy-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	clock := &kafkaClock{now: start}
	app, err := processor.New(processor.Config{Spec: rs, Brokers: cfg.Brokers, StateDir: dir, Logger: cfg.Logger,
		Clock: clock, ClientOpts: cfg.ClientOpts, Registry: cfg.Registry, SessionTimeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- app.Run(actx) }()
	stopped := false
	stopApp := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		return <-done
	}
	defer func() { _ = stopApp() }()

	if err := waitFor(ctx, done, cfg.Timeout, "the pipeline to join its group and be ready", func() (bool, string) {
		return app.Ready(), "not ready"
	}); err != nil {
		return nil, err
	}
	produced := map[state.SourcePartition]int64{} // next offset of each source partition
	for _, a := range acts {
		if a.records == nil {
			clock.set(a.wall)
			if err := settle(ctx, app, done, cfg.Timeout, nil, adm, rs); err != nil {
				return nil, err
			}
			continue
		}
		recs := make([]*kgo.Record, len(a.records))
		for i, r := range a.records {
			recs[i] = &kgo.Record{Topic: run.Rename(r.Topic), Partition: r.Partition, Key: r.Key, Value: r.Value,
				Timestamp: r.Timestamp, Headers: r.Headers}
		}
		pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		err := cl.ProduceSync(pctx, recs...).FirstErr()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("produce the case's records: %w", err)
		}
		for _, r := range recs {
			sp := state.SourcePartition{Topic: r.Topic, Partition: r.Partition}
			produced[sp] = max(produced[sp], r.Offset+1)
		}
		if err := settle(ctx, app, done, cfg.Timeout, produced, adm, rs); err != nil {
			return nil, err
		}
	}
	if err := stopApp(); err != nil {
		return nil, fmt.Errorf("the pipeline stopped on an error: %w", err)
	}
	out := &Outcome{}
	var dec *schema.Decoder
	if writesAvro(spec) {
		dec = schema.NewDecoder(cfg.Registry)
	}
	var written []string
	for _, r := range rs.RollupSpecs() {
		written = append(written, r.Output.Topic)
		if t := r.AlertsTopic(); t != "" {
			written = append(written, t)
		}
	}
	written = append(written, rs.LateTopic, rs.DeadLetterTopic)
	for _, t := range written {
		recs, err := readAll(ctx, conn, adm, t, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			r.Topic = run.original(r.Topic)
		}
		if err := out.add(ctx, spec, dec, recs, run.original); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// settle waits until the App has processed every record produced so far
// (forwarded through the repartition topics and processed there, for a
// pipeline that repartitions, with the watermark records) and
// acknowledged what it wrote. Each check runs one turn of the App's loop
// without the poll at the App's clock (App.Settle).
func settle(ctx context.Context, app *processor.App, done chan error, timeout time.Duration, produced map[state.SourcePartition]int64,
	adm *kadm.Client, spec *topology.Spec) error {
	// The repartition topics: one per distinct key of the rollups.
	var repartTopics []string
	if spec.NeedsRepartition() {
		for _, r := range spec.RollupSpecs() {
			if t := r.RepartitionTopic(); !slices.Contains(repartTopics, t) {
				repartTopics = append(repartTopics, t)
			}
		}
	}
	var repartEnds map[state.SourcePartition]int64
	return waitFor(ctx, done, timeout, "the pipeline to process the case's records", func() (bool, string) {
		pr, err := app.Settle(ctx)
		if err != nil {
			return false, err.Error()
		}
		for sp, end := range produced {
			got := pr.Processed[sp]
			if spec.NeedsRepartition() {
				got = pr.Forwarded[sp]
			}
			if got < end {
				return false, fmt.Sprintf("%s/%d at offset %d of %d", sp.Topic, sp.Partition, got, end)
			}
		}
		if pr.Buffered > 0 {
			return false, fmt.Sprintf("%d records not yet acknowledged", pr.Buffered)
		}
		if !spec.NeedsRepartition() {
			return true, ""
		}
		// Behind the repartition topic: everything forwarded so far,
		// records and the watermark reports a wall-clock step sends, has
		// been processed (and the punctuation of this Settle saw it).
		if repartEnds == nil {
			lctx, cancel := context.WithTimeout(ctx, timeout)
			ends, err := adm.ListEndOffsets(lctx, repartTopics...)
			cancel()
			if err != nil {
				return false, err.Error()
			}
			repartEnds = map[state.SourcePartition]int64{}
			ends.Each(func(o kadm.ListedOffset) {
				repartEnds[state.SourcePartition{Topic: o.Topic, Partition: o.Partition}] = o.Offset
			})
		}
		for sp, end := range repartEnds {
			if end > 0 && pr.Processed[sp] < end {
				return false, fmt.Sprintf("repartition topic %s partition %d at offset %d of %d", sp.Topic, sp.Partition, pr.Processed[sp], end)
			}
		}
		return true, ""
	})
}

// waitFor polls cond until it holds, the App stops, or timeout passes.
func waitFor(ctx context.Context, done chan error, timeout time.Duration, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		last = why
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("waiting for %s: the pipeline stopped: %v", what, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not after %s (last: %s)", what, timeout, last)
		}
	}
}

// createTopic creates a source topic of a case without time retention: the
// case's records carry its clock (2024-01-01 by default), older than any
// retention, and a broker deletes expired records at its next retention
// check (every 5 minutes by default), read or not. The kit deletes the
// topic at the end of the run.
func createTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := adm.CreateTopic(cctx, partitions, -1, map[string]*string{"retention.ms": kadm.StringPtr("-1")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	for {
		td, err := adm.ListTopics(cctx, topic)
		ready := err == nil && td[topic].Err == nil && len(td[topic].Partitions) == int(partitions)
		for _, p := range td[topic].Partitions {
			ready = ready && p.Err == nil && p.Leader >= 0
		}
		if ready {
			return nil
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("topic %s has no leaders after %s", topic, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readAll reads topic from its start to its end offsets as of the call
// (read_committed), in offset order within each partition.
func readAll(ctx context.Context, conn []kgo.Opt, adm *kadm.Client, topic string, timeout time.Duration) ([]*kgo.Record, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ends, err := adm.ListEndOffsets(rctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	offs := map[string]map[int32]kgo.Offset{topic: {}}
	for p := range want {
		offs[topic][p] = kgo.NewOffset().AtStart()
	}
	rd, err := kgo.NewClient(append(conn, kgo.ConsumePartitions(offs), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords())...)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []*kgo.Record
	next := map[int32]int64{}
	for {
		complete := true
		for p, end := range want {
			complete = complete && next[p] >= end
		}
		if complete {
			return out, nil
		}
		fs := rd.PollFetches(rctx)
		if rctx.Err() != nil {
			return nil, fmt.Errorf("read %s: %d records after %s, want offsets %v", topic, len(out), timeout, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
}
