// Package kafkatest gives tests a Kafka to talk to: kfake in-process for
// fast tests, or the real Apache Kafka broker that scripts/test.sh starts
// (EDDY_TEST_BROKERS) for tests that claim Kafka behaviour. Real-broker
// tests are named TestKafka*; they skip only under -short and fail when no
// broker is configured, so CI cannot pass them by skipping.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kfake starts an in-process kfake cluster for the test and returns its
// bootstrap addresses. It is closed when the test ends.
func Kfake(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Real returns the real broker's bootstrap addresses from
// EDDY_TEST_BROKERS. Under -short the test is skipped; otherwise a missing
// broker fails the test.
func Real(t testing.TB) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("real-Kafka test: skipped under -short (run scripts/test.sh for the full suite)")
	}
	v := os.Getenv("EDDY_TEST_BROKERS")
	if v == "" {
		t.Fatal("this test needs a real Apache Kafka broker: run scripts/test.sh (it starts one), " +
			"or set EDDY_TEST_BROKERS=host:port; use go test -short for the fast tests only")
	}
	return strings.Split(v, ",")
}

// Apicurio returns the URL of the Confluent-compatible API of a real
// Apicurio Registry 3.x (http://127.0.0.1:PORT/apis/ccompat/v7) from
// EDDY_TEST_APICURIO, which scripts/test.sh sets after starting one with
// scripts/apicurio.sh. Like Real: skipped under -short, and a missing
// registry fails the test.
func Apicurio(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("Apicurio Registry test: skipped under -short (run scripts/test.sh for the full suite)")
	}
	v := os.Getenv("EDDY_TEST_APICURIO")
	if v == "" {
		t.Fatal("this test needs Apicurio Registry: run scripts/test.sh (it starts one), " +
			"or scripts/apicurio.sh start and set EDDY_TEST_APICURIO to the URL it prints; " +
			"use go test -short for the fast tests only")
	}
	return strings.TrimRight(v, "/")
}

var unsafe = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Name returns a topic or group name unique to this test run, so tests can
// share a broker and run in parallel.
func Name(t testing.TB, base string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := unsafe.ReplaceAllString(t.Name(), "-")
	if len(n) > 60 {
		n = n[:60]
	}
	return strings.ToLower(n) + "-" + base + "-" + hex.EncodeToString(b[:])
}

// Client returns a franz-go client for brokers, closed when the test ends.
func Client(t testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// CreateTopic creates topic with partitions (replication factor 1).
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	createTopic(t, brokers, topic, partitions, nil)
}

// CreateCompactedTopic creates a compacted topic (cleanup.policy=compact),
// as a lookup table's, with partitions (replication factor 1).
func CreateCompactedTopic(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	policy := "compact"
	createTopic(t, brokers, topic, partitions, map[string]*string{"cleanup.policy": &policy})
}

func createTopic(t testing.TB, brokers []string, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	adm := kadm.NewClient(Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	// Wait until every partition has a leader, so producing right away
	// does not race the broker.
	for {
		td, err := adm.ListTopics(ctx, topic)
		ready := err == nil && td[topic].Err == nil && len(td[topic].Partitions) == int(partitions)
		for _, p := range td[topic].Partitions {
			ready = ready && p.Err == nil && p.Leader >= 0
		}
		if ready {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("topic %s has no leaders after 30s: %v", topic, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ReadAll reads every record of topic up to its end offsets as of the call,
// with the given isolation (read_committed when committed is true).
func ReadAll(t testing.TB, brokers []string, topic string, committed bool) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(Client(t, brokers))
	var ends kadm.ListedOffsets
	var err error
	if committed {
		ends, err = adm.ListCommittedOffsets(ctx, topic)
	} else {
		ends, err = adm.ListEndOffsets(ctx, topic)
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	// Control records (transaction markers) are kept so the position
	// reaches the end offset exactly; they are not returned.
	cl := Client(t, brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords())
	var out []*kgo.Record
	next := map[int32]int64{}
	done := func() bool {
		for p, end := range want {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	for !done() {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("reading %s: timed out with %d records (have %v, want %v)", topic, len(out), next, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}
