package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaConsumerGroup: three `eddy run` processes share six partitions
// while input flows; one is stopped cleanly and one is killed with SIGKILL.
// Every final window must still be right (at-least-once: nothing missing,
// repeats identical), and Kafka's own ConsumerGroupCommand must show the
// group's committed offsets at the end of the input.
func TestKafkaConsumerGroup(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) { testConsumerGroup(t, brokers, mode) })
	}
}

func testConsumerGroup(t *testing.T, brokers []string, processing string) {
	// Event time here runs about nine times faster than the wall clock, so
	// a worker that stalls for a rebalance (or the session timeout after
	// SIGKILL) falls minutes of event time behind the others. The grace
	// period covers that, as it must in production for failover stalls.
	sc := newScenario(7, 6, 250, 12)
	sc.grace = 180_000
	e := newE2EWith(t, brokers, processing, sc)
	recs := e.sc.records(e.in)
	n := 0
	for _, ev := range e.sc.events {
		if !ev.designedLate && !ev.flush {
			n++
		}
	}
	normal, tail := recs[:n], recs[n:]

	var ws []*worker
	for i := 0; i < 3; i++ {
		ws = append(ws, startWorker(t, e.spec, e.brokerList(), t.TempDir()))
	}
	// Input flows in ten chunks, about half a second apart; the group
	// changes under it.
	chunk := (len(normal) + 9) / 10
	for i := 0; i < 10; i++ {
		lo, hi := i*chunk, min((i+1)*chunk, len(normal))
		produceSync(t, brokers, normal[lo:hi])
		switch i {
		case 3:
			if err := ws[0].stop(syscall.SIGTERM); err != nil {
				t.Errorf("worker 0: clean stop: %v", err)
			}
		case 6:
			_ = ws[1].stop(syscall.SIGKILL)
		}
		time.Sleep(time.Second)
	}
	// The flush records (far ahead in event time) close every window; they
	// go in once the group has caught up, so they do not overtake the
	// records of partitions still moving to the last worker.
	e.waitIdle(t, 120*time.Second, ws[2])
	produceSync(t, brokers, append(tail, e.sc.badRecords(e.in)...))
	got, late := e.finalResults(t, ws[2])
	e.sc.verify(t, got, late)
	checkOnce(t, processing, got)
	if len(late) > 12*3 {
		t.Logf("note: %d late records (36 designed)", len(late))
	}

	// Kafka's own tool: committed offsets at the end of the input.
	out := consumerGroupDescribe(t, brokers, e.app)
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != e.in {
			continue
		}
		rows++
		cur, err1 := strconv.ParseInt(f[3], 10, 64)
		end, err2 := strconv.ParseInt(f[4], 10, 64)
		if err1 != nil || err2 != nil || cur != end {
			t.Errorf("ConsumerGroupCommand: partition %s of %s: current offset %s, log end %s", f[2], e.in, f[3], f[4])
		}
	}
	if rows != 6 {
		t.Errorf("ConsumerGroupCommand --describe listed %d partitions of %s, want 6:\n%s", rows, e.in, out)
	}
	if err := ws[2].stop(syscall.SIGTERM); err != nil {
		t.Errorf("last worker: clean stop: %v", err)
	}
}

// consumerGroupDescribe runs Kafka's ConsumerGroupCommand --describe.
func consumerGroupDescribe(t *testing.T, brokers []string, group string) string {
	t.Helper()
	script, _ := filepath.Abs("../../scripts/kafka.sh")
	cmd := exec.Command(script, "tool", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
		"--bootstrap-server", strings.Join(brokers, ","), "--describe", "--group", group)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ConsumerGroupCommand: %v\n%s", err, out)
	}
	return string(out)
}
