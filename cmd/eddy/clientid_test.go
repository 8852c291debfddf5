package main

import (
	"context"
	"os"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaClientID: the broker sees each worker's Kafka client id as
// eddy-<app>-<instance>: the --instance-id when set, else the host name.
func TestKafkaClientID(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	e := newE2EWith(t, brokers, "at_least_once", newScenario(5, 2, 10, 2))
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	w1 := startWorker(t, e.spec, e.brokerList(), t.TempDir(), "EDDY_INSTANCE_ID=pod-7")
	w2 := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	want := []string{"eddy-" + e.app + "-" + host, "eddy-" + e.app + "-pod-7"}
	sort.Strings(want)
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	var got []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		gs, err := adm.DescribeGroups(ctx, e.app)
		cancel()
		got = got[:0]
		if err == nil {
			for _, m := range gs[e.app].Members {
				got = append(got, m.ClientID)
			}
		}
		sort.Strings(got)
		if len(got) == 2 && got[0] == want[0] && got[1] == want[1] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s members' client ids = %v (%v), want %v", e.app, got, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, w := range []*worker{w1, w2} {
		if err := w.stop(syscall.SIGTERM); err != nil {
			t.Errorf("eddy exited with %v after SIGTERM", err)
		}
	}
}
