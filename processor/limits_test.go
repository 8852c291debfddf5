package processor

import (
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaRecordSizeBound checks recordSize against the real broker: a
// record exactly at a topic's max.message.bytes by recordSize is accepted
// by both the client (batch limit from describeLimits) and the broker,
// for several shapes of key, value and headers; and the broker does
// refuse a batch over the limit (so the check means something).
func TestKafkaRecordSizeBound(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	const limit = 4096
	topic := kafkatest.Name(t, "small")
	other := kafkatest.Name(t, "default")
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, cfg := range map[string]map[string]*string{
		topic: {"max.message.bytes": kadm.StringPtr(strconv.Itoa(limit))},
		other: nil,
	} {
		resp, err := adm.CreateTopic(ctx, 1, 1, cfg, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	l, err := describeLimits(ctx, adm, []string{topic, other})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.limit(topic); got != limit {
		t.Fatalf("limit(%s) = %d, want %d", topic, got, limit)
	}
	if got := l.limit(other); got != 1048588 {
		t.Errorf("limit of a topic with the broker default = %d, want 1048588", got)
	}
	if got := l.limit("unknown"); got != defaultBatchBytes {
		t.Errorf("limit of an unknown topic = %d, want %d", got, defaultBatchBytes)
	}
	// Uncompressed, as a batch of incompressible data is at worst.
	cl := kafkatest.Client(t, brokers, kgo.ProducerBatchMaxBytesFn(l.limit), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	shapes := []*kgo.Record{
		{Topic: topic},
		{Topic: topic, Key: []byte("k")},
		{Topic: topic, Key: []byte(strings.Repeat("k", 300)), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("b")}}},
		{Topic: topic, Headers: []kgo.RecordHeader{{Key: "eddy.src", Value: make([]byte, 40)}, {Key: "eddy.orig-key", Value: nil},
			{Key: strings.Repeat("h", 200), Value: make([]byte, 500)}}},
	}
	for i, r := range shapes {
		r.Value = randomBytes(limit - recordSize(r))
		if recordSize(r) != limit {
			t.Fatalf("shape %d: size %d", i, recordSize(r))
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Errorf("shape %d: a record of recordSize %d = max.message.bytes was refused: %v", i, limit, err)
		}
	}
	// Over the limit: the broker refuses it (the client allows it here).
	big := kafkatest.Client(t, brokers, kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	err = big.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: randomBytes(2 * limit)}).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("a record of %d bytes on a topic of max.message.bytes %d: err = %v, want MESSAGE_TOO_LARGE", 2*limit, limit, err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
