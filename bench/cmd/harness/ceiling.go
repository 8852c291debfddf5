package main

// Baselines of the machine and the broker, without eddy:
//
//   - the I/O ceiling of count-u100k's record flow (`harness iocopy`):
//     consume the input and, per input record, produce one output record
//     and one changelog record, no decoding and no state. It is the limit
//     for a workload that writes as many records as it reads, where the
//     consume-only ceiling is not.
//   - the pass-through latency baseline (`harness passthrough`): consume
//     a topic and produce every record unchanged to an output topic, the
//     hops a result takes through eddy, with no processing; measured like
//     eddy's latency (output append time − event time), so the part of
//     eddy's tail that is the broker's and the clients' is known.
//
// Both run as child processes on the CPUs of the system under test, with
// eddy's producer settings (linger 5 ms, idempotent, acks all).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const sysPass = "pass-through"

// iocopyCmd is `harness iocopy BROKERS INPUT OUTPUT CHANGELOG`: read INPUT
// from the start to its end and, per record, produce a result-sized
// record to OUTPUT and a changelog-sized record to CHANGELOG (the sizes of
// eddy's count results and rows), waiting for every acknowledgement.
// Prints IOCOPY records=N seconds=S, timed from before the first fetch to
// the last acknowledgement.
func iocopyCmd(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: harness iocopy BROKERS INPUT OUTPUT CHANGELOG")
	}
	ctx := context.Background()
	brokers, input, output, clog := args[0], args[1], args[2], args[3]
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		return err
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, input)
	adm.Close()
	if err != nil {
		return err
	}
	var want int64
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(50<<20),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1_000_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	var failed atomic.Int64
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
		}
	}
	// eddy's result of a count (JSON, about 120 bytes) and its changelog
	// row (window key: length, key, start, end; row: a count).
	const result = `{"key":"%s","window_start":"2026-11-26T12:00:00Z","window_end":"2026-11-26T12:00:10Z","requests":1}`
	row := make([]byte, 12)
	var n int64
	t0 := time.Now()
	for n < want {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(t string, p int32, e error) { err = fmt.Errorf("%s/%d: %w", t, p, e) })
		if err != nil {
			return err
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			key := binary.BigEndian.AppendUint16(nil, uint16(len(r.Key)))
			key = append(key, r.Key...)
			key = binary.BigEndian.AppendUint64(key, uint64(n))
			key = binary.BigEndian.AppendUint64(key, uint64(n+10_000))
			cl.Produce(ctx, &kgo.Record{Topic: clog, Partition: r.Partition, Key: key, Value: row}, done)
			cl.Produce(ctx, &kgo.Record{Topic: output, Key: r.Key, Value: fmt.Appendf(nil, result, r.Key)}, done)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d produces failed", f)
	}
	fmt.Fprintf(os.Stdout, "IOCOPY records=%d seconds=%.6f\n", n, secs)
	return nil
}

var iocopyRE = regexp.MustCompile(`IOCOPY records=(\d+) seconds=([0-9.]+)`)

// runIOCeiling runs `harness iocopy` over d's topic on the CPUs of the
// system under test.
func runIOCeiling(ctx context.Context, e *env, rep int, d dataset) (Result, error) {
	self, err := os.Executable()
	if err != nil {
		return Result{}, err
	}
	name := fmt.Sprintf("iocopy-%d", rep)
	output, clog := name+"-out", name+"-changelog"
	defer func() { _, _ = e.adm.DeleteTopics(ctx, output, clog) }()
	for _, t := range []string{output, clog} {
		if err := createTopic(ctx, e.adm, t, partitions, nil); err != nil {
			return Result{}, err
		}
	}
	p, err := startProc(e, name, []string{self, "iocopy", e.brokers, d.Topic(), output, clog}, "IOCOPY")
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
	m := iocopyRE.FindStringSubmatch(lines[0])
	if m == nil {
		return Result{}, fmt.Errorf("%s: cannot parse %q", name, lines[0])
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	secs, _ := strconv.ParseFloat(m[2], 64)
	return Result{Workload: "io-u100k", System: sysFranz, Rep: rep, Records: n, Seconds: secs, Rate: float64(n) / secs,
		CPUPerM: p.cpuSeconds() / float64(n) * 1e6, PeakRSS: p.peakRSSMiB(),
		Note: "consume + 2 produces per record, no processing; CPU includes process start-up"}, nil
}

// passthroughCmd is `harness passthrough BROKERS INPUT OUTPUT`: copy every
// record of INPUT (from its start) to OUTPUT, unchanged, until killed.
// Prints PASSTHROUGH ready once it has its partitions.
func passthroughCmd(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: harness passthrough BROKERS INPUT OUTPUT")
	}
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(args[0]), kgo.ConsumeTopics(args[1]),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, "PASSTHROUGH ready")
	for {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(t string, p int32, e error) { fmt.Fprintf(os.Stderr, "fetch %s/%d: %v\n", t, p, e) })
		fs.EachRecord(func(r *kgo.Record) {
			cl.Produce(ctx, &kgo.Record{Topic: args[2], Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					fmt.Fprintln(os.Stderr, "produce:", err)
				}
			})
		})
	}
}

// eventTime reads the event time of a generated event (Confluent wire
// format: magic byte, 4-byte schema id, then the Avro record, whose first
// field is ts, a zig-zag varint long).
func eventTime(v []byte) (int64, bool) {
	if len(v) < 6 || v[0] != 0 {
		return 0, false
	}
	ts, n := binary.Varint(v[5:])
	return ts, n > 0
}
