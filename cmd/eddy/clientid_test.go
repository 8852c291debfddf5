package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaClientID: the broker sees each worker's Kafka client id as
// eddy-<app>-<instance>@<console URL>: the --instance-id when set, else the
// host name, then the address its console is reached at (for routing
// queries to a key's owner).
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
	want := []string{
		"eddy-" + e.app + "-pod-7@http://" + w1.metricsAddr(t),
		"eddy-" + e.app + "-" + host + "@http://" + w2.metricsAddr(t),
	}
	sort.Strings(want)
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	waitFor(t, 60*time.Second, "both members with their client ids", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gs, err := adm.DescribeGroups(ctx, e.app)
		if err != nil {
			return false, err.Error()
		}
		var got []string
		for _, m := range gs[e.app].Members {
			got = append(got, m.ClientID)
		}
		sort.Strings(got)
		return slices.Equal(got, want), fmt.Sprintf("client ids %v, want %v", got, want)
	})
	for _, w := range []*worker{w1, w2} {
		if err := w.stop(syscall.SIGTERM); err != nil {
			t.Errorf("eddy exited with %v after SIGTERM", err)
		}
	}
}
