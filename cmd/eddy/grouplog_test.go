package main

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// logCounts returns the count= values of the log lines with message msg.
func logCounts(logs, msg, field string) []int {
	re := regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `".* ` + field + `=(\d+)`)
	var out []int
	for _, m := range re.FindAllStringSubmatch(logs, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

// The logs tell the story of the group: partitions assigned and revoked
// with counts, restore start and end with records and duration, a clean
// shutdown. Two workers share a group: the second's arrival takes
// partitions from the first, its clean stop gives them back, and the
// first restores what the second committed.
func TestGroupStoryLogs(t *testing.T) {
	t.Parallel()
	e := newE2E(t, kafkatest.Kfake(t), "at_least_once")
	recs := e.sc.records(e.in)
	produceSync(t, e.brokers, recs[:len(recs)/2])
	w1 := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	e.waitIdle(t, 60*time.Second, w1)
	total := 0
	if c := logCounts(w1.logs(), "partitions assigned", "count"); len(c) == 0 || c[0] == 0 {
		t.Fatalf("first worker: no \"partitions assigned\" line with a count:\n%s", w1.logs())
	} else {
		total = c[0]
	}
	if !strings.Contains(w1.logs(), `msg="restoring state"`) || len(logCounts(w1.logs(), "state restored; processing", "records")) == 0 {
		t.Errorf("first worker: no restore start and end lines:\n%s", w1.logs())
	}

	w2 := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	waitFor(t, 60*time.Second, "second worker restored its partitions", func() (bool, string) {
		return strings.Contains(w2.logs(), "state restored; processing"), w2.logs()
	})
	waitFor(t, 60*time.Second, "first worker logged the revoke", func() (bool, string) {
		return len(logCounts(w1.logs(), "partitions revoked; committing and handing them over", "count")) > 0, w1.logs()
	})
	produceSync(t, e.brokers, recs[len(recs)/2:])
	e.waitIdle(t, 90*time.Second, w1)
	if err := w2.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("second worker: %v", err)
	}
	if !strings.Contains(w2.logs(), `msg="shut down cleanly: committed, left the group"`) {
		t.Errorf("second worker's clean stop is not in its log:\n%s", w2.logs())
	}
	// The first worker gets every partition back and restores the tail
	// the second committed to their changelogs.
	waitFor(t, 60*time.Second, "first worker took every partition back", func() (bool, string) {
		c := logCounts(w1.logs(), "partitions assigned", "count")
		restored := logCounts(w1.logs(), "state restored; processing", "records")
		// Its first assignment, then the partitions back (a cooperative
		// rebalance assigns nothing new when the second worker joins).
		return len(c) >= 2 && len(restored) >= 2 && restored[len(restored)-1] > 0, w1.logs()
	})
	got, late := e.finalResults(t, w1)
	e.sc.verify(t, got, late)
	if err := w1.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("first worker: %v", err)
	}
	if !strings.Contains(w1.logs(), `msg="shut down cleanly: committed, left the group"`) {
		t.Errorf("first worker's clean stop is not in its log:\n%s", w1.logs())
	}
	t.Logf("%d partitions; first worker's group story:\n%s", total, grepLines(w1.logs(),
		"partitions assigned", "partitions revoked", "restoring state", "state restored", "shut down"))
}

// grepLines returns the lines of s that contain any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(line, sub) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
