// Command goka-peer is the Go peer of the side-by-side benchmark
// (bench/cmd/harness, BENCHMARKS.md): the count workloads' logic written
// as a Goka (github.com/lovoo/goka) application, the Go developer's
// alternative to eddy.
//
// Logic: decode every input record (Avro in the Confluent wire format,
// every field, like the other two systems), take the event time from its
// ts field, and count per grouping key per tumbling window. The count is
// kept in Goka's group table keyed by grouping key and window start:
// Goka keys a table by the message key, so the input callback re-keys
// each record to "<key>|<window start>" through the group's loop topic
// (ctx.Loopback), and the loop callback updates the count in the table
// (its default storage: LevelDB, with the compacted table topic as its
// changelog). Goka has no windows and no event-time close: results are
// emitted on every update (the newest result of a window is its count),
// records later than window end + grace against the partition's stream
// time are dropped (counted on stderr). The harness compares the newest
// result of each sampled (key, window) with eddy's and with the exact
// counts.
//
// Usage: goka-peer key=value... with bootstrap, input, output, app, state,
// schema (a file with the Avro schema), window_ms, grace_ms, commit_ms.
//
// It is its own Go module, so eddy's module does not carry Goka's
// dependencies (sarama, goleveldb).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/hamba/avro/v2"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
)

// event is the benchmark's input record (internal/benchdata.EventSchema).
type event struct {
	TS        int64    `avro:"ts"`
	Key       string   `avro:"key"`
	Service   string   `avro:"service"`
	Endpoint  string   `avro:"endpoint"`
	Status    int32    `avro:"status"`
	LatencyMs float64  `avro:"latency_ms"`
	Region    string   `avro:"region"`
	UserAgent string   `avro:"user_agent"`
	Tags      []string `avro:"tags"`
	RequestID string   `avro:"request_id"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "goka-peer:", err)
		os.Exit(1)
	}
}

func run() error {
	args := map[string]string{}
	for _, a := range os.Args[1:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("argument %q is not key=value", a)
		}
		args[k] = v
	}
	for _, k := range []string{"bootstrap", "input", "output", "app", "state", "schema", "window_ms", "grace_ms", "commit_ms"} {
		if args[k] == "" {
			return fmt.Errorf("missing %s=", k)
		}
	}
	windowMs, _ := strconv.ParseInt(args["window_ms"], 10, 64)
	graceMs, _ := strconv.ParseInt(args["grace_ms"], 10, 64)
	commitMs, _ := strconv.ParseInt(args["commit_ms"], 10, 64)
	if windowMs <= 0 || commitMs <= 0 {
		return fmt.Errorf("window_ms and commit_ms must be positive")
	}
	schemaText, err := os.ReadFile(args["schema"])
	if err != nil {
		return err
	}
	schema, err := avro.Parse(string(schemaText))
	if err != nil {
		return err
	}

	cfg := goka.DefaultConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.ClientID = args["app"]
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest // the pre-loaded input, from its start
	cfg.Consumer.Offsets.AutoCommit.Interval = time.Duration(commitMs) * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	// eddy's and Kafka Streams' producer settings in the benchmark: acks
	// from all replicas, batches sent after at most 5 ms.
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1 // the benchmark's broker is a single node
	tmc.Stream.Replication = 1
	tmc.Stream.Retention = 7 * 24 * time.Hour

	output := goka.Stream(args["output"])
	var streamTime sync.Map // input partition -> *atomic.Int64, the highest event time read
	var late, bad atomic.Int64
	input := func(ctx goka.Context, msg any) {
		v, _ := msg.([]byte)
		var ev event
		if len(v) < 5 || v[0] != 0 || avro.Unmarshal(schema, v[5:], &ev) != nil {
			bad.Add(1)
			return
		}
		st, _ := streamTime.LoadOrStore(ctx.Partition(), new(atomic.Int64))
		now := st.(*atomic.Int64)
		if ev.TS > now.Load() {
			now.Store(ev.TS) // one goroutine per partition: no race on the max
		}
		start := ev.TS - ((ev.TS%windowMs)+windowMs)%windowMs
		if start+windowMs+graceMs <= now.Load() {
			late.Add(1)
			return
		}
		ctx.Loopback(ctx.Key()+"|"+strconv.FormatInt(start, 10), []byte{})
	}
	count := func(ctx goka.Context, _ any) {
		var n int64
		if v := ctx.Value(); v != nil {
			n = v.(int64)
		}
		n++
		ctx.SetValue(n)
		key, ws, _ := strings.Cut(ctx.Key(), "|")
		start, _ := strconv.ParseInt(ws, 10, 64)
		ctx.Emit(output, key, result(key, start, start+windowMs, n))
	}
	g := goka.DefineGroup(goka.Group(args["app"]),
		goka.Input(goka.Stream(args["input"]), new(codec.Bytes), input),
		goka.Loop(new(codec.Bytes), count),
		goka.Persist(new(codec.Int64)),
		goka.Output(output, new(codec.Bytes)),
	)
	p, err := goka.NewProcessor([]string{args["bootstrap"]}, g,
		goka.WithStorageBuilder(storage.DefaultBuilder(args["state"])),
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(cfg)),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(cfg)),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(cfg)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(cfg, tmc)),
	)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = p.Run(ctx)
	fmt.Fprintf(os.Stderr, "goka-peer: stopped; %d late records dropped, %d undecodable\n", late.Load(), bad.Load())
	return err
}

// result is the JSON of a count result, as eddy and the Kafka Streams peer
// write it (the grouping key's parts, window start and end, the count).
func result(groupKey string, start, end, n int64) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"key":`...)
	b = append(b, strings.TrimSuffix(strings.TrimPrefix(groupKey, "["), "]")...)
	b = append(b, `,"window_start":"`...)
	b = time.UnixMilli(start).UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `","window_end":"`...)
	b = time.UnixMilli(end).UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `","requests":`...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, '}')
}
