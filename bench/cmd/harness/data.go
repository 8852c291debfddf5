package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/benchdata"
	"github.com/eddy-streams/eddy/schema"
)

// eventSchema is the one input schema of every workload (see benchdata).
const eventSchema = benchdata.EventSchema

const partitions = 6

var (
	services  = []string{"checkout", "search", "accounts", "catalog"}
	endpoints = []string{"/api/cart", "/api/pay", "/api/search", "/api/login", "/api/items"}
	regions   = []string{"eu-west-1", "us-east-1", "ap-south-1"} // the filter drops ap-south-1 (a third)
	agents    = []string{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)", "okhttp/4.12.0 (Android 14)", "curl/8.5.0 (x86_64-pc-linux-gnu)"}
	tagPool   = []string{"canary", "mobile", "web", "beta", "internal", "retry"}
)

// dataset is one pre-loaded input topic.
type dataset struct {
	Name    string // topic suffix and label, e.g. u100k
	Keys    int
	Dist    string // uniform, zipf or seq (record i has key i mod Keys)
	Records int
}

func (d dataset) Topic() string { return "in-" + d.Name }

// keyPicker returns the key index of record i.
func keyPicker(d dataset, seed uint64) func(i int) int {
	r := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	switch d.Dist {
	case "seq":
		return func(i int) int { return i % d.Keys }
	case "zipf":
		z := rand.NewZipf(r, 1.1, 1, uint64(d.Keys-1))
		// Zipf favours small indices; scramble them so hot keys spread over partitions.
		perm := r.Perm(d.Keys)
		return func(int) int { return perm[z.Uint64()] }
	default:
		return func(int) int { return r.IntN(d.Keys) }
	}
}

func keyName(k int) string { return fmt.Sprintf("k-%07d", k) }

// groupKey is eddy's grouping key for key: [key], the JSON array of the key
// fields (processor.groupKey); records are keyed by it so that both systems
// can aggregate without a repartition topic.
func groupKey(k string) []byte { return []byte(`["` + k + `"]`) }

// eventGen makes the fields of one event. Not safe for concurrent use.
type eventGen struct {
	r   *rand.Rand
	seq uint64
}

func newEventGen(seed uint64) *eventGen {
	return &eventGen{r: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

func (g *eventGen) fields(ts int64, key string) map[string]any {
	g.seq++
	status := 200
	if g.r.IntN(100) < 2 {
		status = 503
	}
	nt := 2 + g.r.IntN(2)
	tags := make([]string, nt)
	for i := range tags {
		tags[i] = tagPool[g.r.IntN(len(tagPool))]
	}
	return map[string]any{
		"ts":         ts,
		"key":        key,
		"service":    services[g.r.IntN(len(services))],
		"endpoint":   endpoints[g.r.IntN(len(endpoints))],
		"status":     status,
		"latency_ms": float64(g.r.IntN(50000)) / 100,
		"region":     regions[g.r.IntN(len(regions))],
		"user_agent": agents[g.r.IntN(len(agents))],
		"tags":       tags,
		"request_id": "req-" + strconv.FormatUint(g.r.Uint64()&0xffffffffff, 16) + "-" + strconv.FormatUint(g.seq, 10),
	}
}

func createTopic(ctx context.Context, adm *kadm.Client, topic string, parts int32, cfg map[string]*string) error {
	resp, err := adm.CreateTopic(ctx, parts, 1, cfg, topic)
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if resp.Err != nil {
		return fmt.Errorf("create topic %s: %w", topic, resp.Err)
	}
	// A system started right after must find the topic in its first
	// metadata (eddy stops on a missing source topic): wait until the
	// broker lists it with a leader for every partition.
	deadline := time.Now().Add(30 * time.Second)
	for {
		tds, err := adm.ListTopics(ctx, topic)
		if err == nil {
			if td, ok := tds[topic]; ok && td.Err == nil && len(td.Partitions) == int(parts) {
				ready := true
				for _, p := range td.Partitions {
					ready = ready && p.Err == nil && p.Leader >= 0
				}
				if ready {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("create topic %s: not in the metadata with leaders after 30s (%v)", topic, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sampledEvent is one pre-loaded record of a sampled key (see inSample),
// kept to compute the exact results the systems should emit.
type sampledEvent struct {
	key     string // the grouping key, as the results' record key
	ts      int64
	latency float64
}

// preload writes d.Records events to d's topic: event time (and the Kafka
// timestamp) advancing 1 ms per record, ending a minute before now, keyed by
// the grouping key. It returns the average value size and the events of
// the sampled keys.
func preload(ctx context.Context, env *env, d dataset) (float64, []sampledEvent, error) {
	if err := createTopic(ctx, env.adm, d.Topic(), partitions, nil); err != nil {
		return 0, nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.brokers), kgo.DefaultProduceTopic(d.Topic()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return 0, nil, err
	}
	defer cl.Close()
	pick := keyPicker(d, 42)
	g := newEventGen(7)
	base := time.Now().Add(-time.Minute).UnixMilli() - int64(d.Records)
	var (
		bytes   int64
		errOnce sync.Once
		perr    error
		sampled []sampledEvent
	)
	for i := 0; i < d.Records; i++ {
		ts := base + int64(i)
		k := keyName(pick(i))
		f := g.fields(ts, k)
		v, err := env.enc.Encode(f)
		if err != nil {
			return 0, nil, fmt.Errorf("encode: %w", err)
		}
		bytes += int64(len(v))
		if gk := groupKey(k); inSample(gk) {
			sampled = append(sampled, sampledEvent{key: string(gk), ts: ts, latency: f["latency_ms"].(float64)})
		}
		cl.Produce(ctx, &kgo.Record{Key: groupKey(k), Value: v, Timestamp: time.UnixMilli(ts)}, func(_ *kgo.Record, err error) {
			if err != nil {
				errOnce.Do(func() { perr = err })
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, nil, err
	}
	if perr != nil {
		return 0, nil, fmt.Errorf("produce to %s: %w", d.Topic(), perr)
	}
	return float64(bytes) / float64(d.Records), sampled, nil
}

// consumeAll reads topic from the start to its current end offsets and
// returns how many records and bytes it read. It is the franz-go side of
// the consume-only workload (run as `harness consume` under the CPU limit)
// and the untimed warm read that puts each topic in the page cache.
func consumeAll(ctx context.Context, brokers, topic string) (n, bytes int64, secs float64, err error) {
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		return 0, 0, 0, err
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		return 0, 0, 0, err
	}
	var want int64
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(50<<20))
	if err != nil {
		return 0, 0, 0, err
	}
	defer cl.Close()
	t0 := time.Now() // from before the first fetch: franz-go fetches ahead in the background
	for n < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n, bytes, 0, err
		}
		fs.EachError(func(t string, p int32, e error) { err = fmt.Errorf("%s/%d: %w", t, p, e) })
		if err != nil {
			return n, bytes, 0, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			bytes += int64(len(r.Key) + len(r.Value))
		})
	}
	return n, bytes, time.Since(t0).Seconds(), nil
}

// openLoop produces events with event time = creation time at rate per
// second for dur, on a fixed schedule that does not wait for the system
// under test (open loop). Keys are uniform over keys.
func openLoop(ctx context.Context, env *env, topic string, rate int, dur time.Duration, keys int) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.brokers), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1_000_000))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	g := newEventGen(uint64(rate))
	r := rand.New(rand.NewPCG(1, 2))
	var sent, failed atomic.Int64
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		now := <-tick.C
		el := now.Sub(start)
		if el >= dur || ctx.Err() != nil {
			break
		}
		due := int64(el.Seconds()*float64(rate)) - sent.Load()
		for ; due > 0; due-- {
			t := time.Now()
			k := keyName(r.IntN(keys))
			v, err := env.enc.Encode(g.fields(t.UnixMilli(), k))
			if err != nil {
				return sent.Load(), err
			}
			cl.Produce(ctx, &kgo.Record{Key: groupKey(k), Value: v, Timestamp: t}, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Add(1)
				}
			})
			sent.Add(1)
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return sent.Load(), err
	}
	if f := failed.Load(); f > 0 {
		return sent.Load(), fmt.Errorf("%d of %d produces failed", f, sent.Load())
	}
	return sent.Load(), nil
}

// consumeCmd is `harness consume BROKERS TOPIC`: the franz-go consume-only
// ceiling, run by the harness as a child process under the CPU limit.
func consumeCmd(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: harness consume BROKERS TOPIC")
	}
	n, b, s, err := consumeAll(context.Background(), args[0], args[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "CONSUMED records=%d bytes=%d seconds=%.6f\n", n, b, s)
	return nil
}

func newEncoder(ctx context.Context, registryURL string) (*schema.Encoder, error) {
	return schema.NewEncoder(ctx, schema.NewClient(registryURL), "bench-events-value", eventSchema)
}
