package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaRestoreOutlastsRebalance: a worker restoring a changelog for
// longer than the group's rebalance timeout keeps its group membership
// through rebalances that happen meanwhile (restore runs outside the
// assignment callback, processor/restore.go). The restore is slowed by
// test hooks (one batch per fetch, a pause after each). A second member
// joins during the restore and takes the restoring partitions (the worker
// abandons their restore) and leaves; while the worker restores them again,
// a third member joins, takes source partitions, and leaves. The worker is
// never removed from the group (no "partitions lost", the same member id
// before and after), /readyz is 503 while it restores and 200 once every
// partition is restored, and every final window is right afterwards.
//
// With the restore inside the assignment callback, the worker cannot
// rejoin within the rebalance timeout and loses its partitions
// (UNKNOWN_MEMBER_ID): checked by hand against that mutation.
func TestKafkaRestoreOutlastsRebalance(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	e := newE2EWith(t, brokers, "at_least_once", newScenario(11, 2, 400, 12))
	first, second := e.halves()

	// A changelog of many small batches: commits every 200ms while the
	// input trickles in.
	w1 := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	chunk := (len(first) + 23) / 24
	for len(first) > 0 {
		n := min(chunk, len(first))
		produceSync(t, brokers, first[:n])
		first = first[n:]
		time.Sleep(250 * time.Millisecond)
	}
	e.waitIdle(t, 60*time.Second, w1)
	if err := w1.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("first worker: clean stop: %v", err)
	}

	// A new worker, on an empty state directory, restores it one batch per
	// fetch, slowly, with a rebalance timeout far shorter than the restore.
	const rebalanceTimeout = 2 * time.Second
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir(),
		"EDDY_TEST_RESTORE_FETCH_BYTES=1", "EDDY_TEST_RESTORE_PAUSE=150ms",
		"EDDY_TEST_REBALANCE_TIMEOUT="+rebalanceTimeout.String())
	addr := w.httpAddr(t)
	waitFor(t, 60*time.Second, "the worker began to restore", func() (bool, string) {
		w.checkRunning(t)
		return strings.Contains(w.logs(), `msg="restoring state"`), w.logs()
	})
	restoreBegan := time.Now()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	memberBefore := eddyMember(t, adm, e.app)
	if r := httpGet(t, "http://"+addr+"/readyz"); r.code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while restoring: %d %q, want 503", r.code, r.body)
	}

	// Another member joins (a rebalance the worker must take part in
	// within the rebalance timeout), gets partitions of topic, and leaves
	// again (another rebalance).
	joinAndLeave := func(topic string) {
		other, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(e.app), kgo.ConsumeTopics(topic),
			kgo.DisableAutoCommit(), kgo.RebalanceTimeout(rebalanceTimeout), kgo.SessionTimeout(6*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close() // leaves the group: the partitions go back to the worker
		waitFor(t, 30*time.Second, "the other member got partitions of "+topic, func() (bool, string) {
			w.checkRunning(t)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			other.PollFetches(ctx)
			cancel()
			groups, err := adm.DescribeGroups(context.Background(), e.app)
			g := groups[e.app]
			if err != nil || len(g.Members) != 2 || g.State != "Stable" {
				return false, g.State
			}
			for _, m := range g.Members {
				if a, ok := m.Assigned.AsConsumer(); ok && !strings.HasPrefix(m.ClientID, "eddy-") && len(a.Topics) > 0 {
					return true, ""
				}
			}
			return false, "the other member has no partition yet"
		})
	}
	restoring := func() bool { return !strings.Contains(w.logs(), "state restored; processing") }

	// First the aggregation input (the repartition topic), whose
	// partitions the worker is restoring: it abandons their restore, and
	// restores them again when they come back.
	joinAndLeave(e.app + "-repartition")
	waitFor(t, 30*time.Second, "the worker restores again the partitions it got back", func() (bool, string) {
		w.checkRunning(t)
		return strings.Count(w.logs(), `msg="restoring state"`) >= 2, w.logs()
	})
	// Then, while that restore runs, the source topic: the restore goes
	// on through both rebalances.
	joinAndLeave(e.in)
	if strings.Contains(w.logs(), "partitions lost") {
		t.Errorf("the worker lost its partitions (it was removed from the group) during the restore:\n%s", w.logs())
	}
	if !restoring() {
		t.Fatalf("the restore ended before the rebalances did (%s): make it slower; log:\n%s", time.Since(restoreBegan), w.logs())
	}
	if r := httpGet(t, "http://"+addr+"/readyz"); r.code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while restoring: %d %q, want 503", r.code, r.body)
	}
	waitReady(t, w, addr)
	// The worker logs the end of the restore before it turns ready; the
	// test reads its stderr through a pipe, which may lag a moment.
	var logs string
	var m []string
	waitFor(t, 10*time.Second, "the end of the restore in the log of a ready worker", func() (bool, string) {
		logs = w.logs()
		m = restoreEndRE.FindStringSubmatch(logs)
		return m != nil, logs
	})
	took, err := time.ParseDuration(m[2])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored %s records in %s (rebalance timeout %s); ready %s after the first restore began",
		m[1], took, rebalanceTimeout, time.Since(restoreBegan).Round(time.Millisecond))
	if m[1] == "0" || took < 2*rebalanceTimeout {
		t.Errorf("the restore took %s for %s records, not longer than twice the rebalance timeout (%s): the test proves nothing",
			took, m[1], rebalanceTimeout)
	}
	if !t.Failed() && strings.Contains(logs, "partitions lost") {
		t.Errorf("the worker lost its partitions (it was removed from the group) during the restore:\n%s", logs)
	}
	if !strings.Contains(logs, "restore abandoned: partitions revoked while restoring") {
		t.Errorf("the worker did not abandon the restore of the partition the second member took:\n%s", logs)
	}
	if after := eddyMember(t, adm, e.app); after != memberBefore {
		t.Errorf("the worker's member id changed from %s to %s: it left or was removed from the group", memberBefore, after)
	}

	produceSync(t, brokers, second)
	got, late := e.finalResults(t, w)
	e.sc.verify(t, got, late)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("clean stop: %v", err)
	}
}

var restoreEndRE = regexp.MustCompile(`msg="state restored; processing" .*records=(\d+) took=(\S+)`)

// eddyMember is the member id of the one eddy worker in group.
func eddyMember(t *testing.T, adm *kadm.Client, group string) string {
	t.Helper()
	var id string
	waitFor(t, 30*time.Second, "one eddy member in the group", func() (bool, string) {
		groups, err := adm.DescribeGroups(context.Background(), group)
		if err != nil {
			return false, err.Error()
		}
		var ids []string
		for _, m := range groups[group].Members {
			if strings.HasPrefix(m.ClientID, "eddy-") {
				ids = append(ids, m.MemberID)
			}
		}
		if len(ids) != 1 {
			return false, strings.Join(ids, " ")
		}
		id = ids[0]
		return true, ""
	})
	return id
}
