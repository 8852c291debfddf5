package processor

// Record size limits: an oversized record never stops a pipeline.
//
// Kafka refuses a record batch larger than its topic's max.message.bytes
// (MESSAGE_TOO_LARGE), and the client refuses to build one larger than its
// own batch limit. Either refusal used to fail the commit, the worker
// exited, and every restart met the same record again. The invariant kept
// here instead:
//
//   - At start, eddy reads max.message.bytes of every topic it writes to
//     (describeLimits) and gives the client the same per-topic batch limit
//     (kgo.ProducerBatchMaxBytesFn), capped at maxBatchBytes. So a record
//     that the topic accepts is not refused by the client, and the client
//     never builds a batch that the topic refuses.
//   - Before producing, App.write compares recordSize (an upper bound of
//     the size of a batch holding the record alone, as Kafka counts it)
//     with the limit of the target topic. A record that does not fit is
//     never produced: it goes to the dead-letter topic with class
//     too_large, and when the dead letter does not fit that topic either,
//     a reference record without key or value (source topic, partition,
//     offset and sizes in headers) goes there instead. Processing goes
//     on; the offset is committed past the record like any dead letter.
//   - A produce that still fails with MESSAGE_TOO_LARGE (a limit lowered
//     while eddy runs) fails the commit with an error that says so and
//     what to do; the restart reads the limits again and dead-letters the
//     record, so the worker does not crash-loop on it.

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/admin"
)

const (
	// defaultBatchBytes is franz-go's default batch limit, just under
	// Kafka's default max.message.bytes (1048588): the limit of a topic
	// whose configuration could not be read.
	defaultBatchBytes int32 = 1000012
	// maxBatchBytes caps the batch limit eddy gives the client, whatever a
	// topic allows: a batch is held in memory while it is built and sent,
	// and franz-go's produce requests are at most 100 MiB
	// (kgo.BrokerMaxWriteBytes; socket.request.max.bytes on the broker).
	maxBatchBytes int32 = admin.MaxBatchBytes
	// minBatchBytes is the smallest batch limit franz-go accepts.
	minBatchBytes int32 = 512
)

// topicLimits is the largest record batch, in bytes, that eddy writes to
// each topic: its max.message.bytes, within [minBatchBytes,
// maxBatchBytes]. Read-only after describeLimits: the producer calls
// limit from its own goroutines.
type topicLimits struct {
	byTopic map[string]int32
}

// limit returns the batch limit of topic (defaultBatchBytes when unknown).
func (l *topicLimits) limit(topic string) int32 {
	if l != nil {
		if v, ok := l.byTopic[topic]; ok {
			return v
		}
	}
	return defaultBatchBytes
}

// describeLimits reads max.message.bytes of topics. A topic whose
// configuration cannot be read keeps defaultBatchBytes (and the error is
// returned, for a warning: records over that go to the dead-letter topic,
// which is safe).
func describeLimits(ctx context.Context, adm *kadm.Client, topics []string) (*topicLimits, error) {
	l := &topicLimits{byTopic: make(map[string]int32, len(topics))}
	rcs, err := admin.DescribeTopicConfigs(ctx, adm, topics...)
	if err != nil {
		return l, fmt.Errorf("describe the configs of %v: %w", topics, err)
	}
	var errs []error
	for _, rc := range rcs {
		if rc.Err != nil {
			errs = append(errs, fmt.Errorf("topic %s: %w", rc.Name, rc.Err))
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			v, perr := strconv.ParseInt(*c.Value, 10, 64)
			if perr != nil {
				errs = append(errs, fmt.Errorf("topic %s: max.message.bytes %q: %w", rc.Name, *c.Value, perr))
				continue
			}
			l.byTopic[rc.Name] = int32(min(max(v, int64(minBatchBytes)), int64(maxBatchBytes)))
		}
	}
	return l, errors.Join(errs...)
}

// recordSize is an upper bound of the size Kafka counts for a batch that
// holds rec alone (what max.message.bytes limits, before compression): the
// batch header, then the record with every varint at its widest. The
// client's own estimate (franz-go's tryBuffer) is never above it, so a
// record that passes this check is not refused by the client either.
func recordSize(rec *kgo.Record) int {
	const (
		batchOverhead = 61 // v2 batch header, with the log's offset and length
		int32Varint   = 5
		int64Varint   = 10
		// record length, attributes, timestamp delta, offset delta, key
		// length, value length, header count.
		recordOverhead = int32Varint + 1 + int64Varint + int32Varint + int32Varint + int32Varint + int32Varint
	)
	n := batchOverhead + recordOverhead + len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += 2*int32Varint + len(h.Key) + len(h.Value)
	}
	return n
}

// ErrTooLarge is the dead-letter class of a record that does not fit the
// topic eddy would write it to (its max.message.bytes).
var ErrTooLarge = errors.New("too_large")

// Headers of too_large dead letters and of references.
const (
	hdrTooLargeTopic = "eddy.too-large.topic" // the topic the record did not fit
	hdrTooLargeSize  = "eddy.too-large.size"  // its size there, in bytes (recordSize)
	hdrTooLargeLimit = "eddy.too-large.limit" // that topic's max.message.bytes
	// hdrReference marks a reference record: the dead letter did not fit
	// the dead-letter topic; key and value are left out, the record is in
	// its source topic at eddy.source.partition/offset.
	hdrReference = "eddy.reference"
)

// write produces rec, built from the input record src (nil for results),
// when it fits its topic. Else it dead-letters it with class too_large
// or, when rec is itself a dead letter, writes a reference in its place.
func (a *App) write(ctx context.Context, rec, src *kgo.Record) {
	size, limit := recordSize(rec), int(a.limits.limit(rec.Topic))
	if size <= limit {
		a.produce(rec)
		return
	}
	a.m.tooLarge.WithLabelValues(rec.Topic).Inc()
	if rec.Topic == a.p.spec.DeadLetterTopic {
		a.writeReference(ctx, rec, size, limit)
		return
	}
	tl := []kgo.RecordHeader{
		strHeader(hdrTooLargeTopic, rec.Topic),
		strHeader(hdrTooLargeSize, strconv.Itoa(size)),
		strHeader(hdrTooLargeLimit, strconv.Itoa(limit)),
	}
	re := &RecordError{Class: ErrTooLarge, Err: fmt.Errorf("%d bytes as a record of topic %s, over its max.message.bytes %d; raise max.message.bytes of %s to let such records through",
		size, rec.Topic, limit, rec.Topic)}
	if src != nil {
		a.deadLetterWith(ctx, src, re, tl)
		return
	}
	// A result: no input record to point at; the dead letter holds the
	// result itself.
	re.Topic = rec.Topic
	headers := append(tl,
		strHeader(hdrErrClass, ErrTooLarge.Error()),
		strHeader(hdrErrMessage, re.Error()))
	a.m.deadLetters.WithLabelValues(ErrTooLarge.Error()).Inc()
	a.write(ctx, &kgo.Record{Topic: a.p.spec.DeadLetterTopic, Key: rec.Key, Value: rec.Value, Headers: headers,
		Timestamp: a.clock.Now()}, nil)
}

// writeReference writes, in place of the dead letter dl that does not fit
// the dead-letter topic, a record with its eddy.* headers only: why it was
// dead-lettered and where its source record is.
func (a *App) writeReference(ctx context.Context, dl *kgo.Record, size, limit int) {
	var headers []kgo.RecordHeader
	hasTL := false
	for _, h := range dl.Headers {
		if len(h.Key) > 5 && h.Key[:5] == "eddy." {
			headers = append(headers, h)
			hasTL = hasTL || h.Key == hdrTooLargeTopic
		}
	}
	if !hasTL {
		headers = append(headers,
			strHeader(hdrTooLargeTopic, dl.Topic),
			strHeader(hdrTooLargeSize, strconv.Itoa(size)),
			strHeader(hdrTooLargeLimit, strconv.Itoa(limit)))
	}
	headers = append(headers, strHeader(hdrReference, fmt.Sprintf(
		"the dead letter (%d bytes) does not fit topic %s (max.message.bytes %d): key and value left out; the record is in its source topic at the partition and offset above",
		size, dl.Topic, limit)))
	ref := &kgo.Record{Topic: dl.Topic, Headers: headers, Timestamp: dl.Timestamp}
	if rs := recordSize(ref); rs > limit {
		// Only with a dead-letter topic limited to a few hundred bytes.
		a.log.Error("dead letter dropped: not even a reference to it fits the dead-letter topic; raise its max.message.bytes",
			"topic", dl.Topic, "limit", limit, "reference_size", rs, "headers", headerText(headers))
		return
	}
	a.m.deadLetterRefs.Inc()
	a.produce(ref)
}

func headerText(hs []kgo.RecordHeader) string {
	var b []byte
	for i, h := range hs {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, h.Key...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, string(h.Value))
	}
	return string(b)
}

// explainProduceErr adds to a produce error what to do when a record was
// too large for its topic after all (its limit was lowered after start, or
// a broker limit is lower than the topic's).
func (a *App) explainProduceErr(r *kgo.Record, err error) error {
	if !errors.Is(err, kerr.MessageTooLarge) && !errors.Is(err, kerr.RecordListTooLarge) {
		return fmt.Errorf("produce to %s: %w", r.Topic, err)
	}
	return fmt.Errorf("produce to %s: %w: a record of %d bytes did not fit although eddy checked it against the topic's max.message.bytes read at start (%d): "+
		"the limit was lowered since, or a broker limit (message.max.bytes, socket.request.max.bytes) is lower; "+
		"restart eddy to read the limits again (records that do not fit then go to the dead-letter topic with class too_large), or raise max.message.bytes of %s",
		r.Topic, err, recordSize(r), a.limits.limit(r.Topic), r.Topic)
}
