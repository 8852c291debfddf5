//go:build standbybench

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaStandbyFailoverTime measures (it asserts nothing about time)
// how long a killed worker's partitions take to process again on the
// other worker, with and without a standby (issue 17): two workers
// (static membership, --session-timeout EDDY_SBBENCH_SESSION, default
// 10s) run the pipeline of standby_test.go (count and sum per user, 1h
// windows, commit interval 200ms) over EDDY_SBBENCH_KEYS (1,000,000)
// users on four partitions, one record each, so the state holds that many
// keys. Once everything is processed (and, with a standby, the standby
// has caught up), a producer updates random users at about 1,000
// records/s, and after 5 s the worker with instance id w0 is killed with
// SIGKILL. One probe record is then produced to each of w0's partitions;
// the clock stops when the group has committed every probe (under
// exactly-once: its transaction, with its results, is committed). Also
// reported: when w1 logged that its restores were done, and what it
// restored. Modes: EDDY_SBBENCH_MODES (default
// "exactly_once/1,exactly_once/0"; processing/standby_replicas).
//
//	EDDY_TEST_BROKERS=127.0.0.1:52505 go test -tags standbybench -run TestKafkaStandbyFailoverTime -v -timeout 60m ./cmd/eddy/
func TestKafkaStandbyFailoverTime(t *testing.T) {
	keys := 1_000_000
	if v := os.Getenv("EDDY_SBBENCH_KEYS"); v != "" {
		keys, _ = strconv.Atoi(v)
	}
	session := "10s"
	if v := os.Getenv("EDDY_SBBENCH_SESSION"); v != "" {
		session = v
	}
	modes := "exactly_once/1,exactly_once/0"
	if v := os.Getenv("EDDY_SBBENCH_MODES"); v != "" {
		modes = v
	}
	for _, m := range strings.Split(modes, ",") {
		processing, n, _ := strings.Cut(m, "/")
		standbys, _ := strconv.Atoi(n)
		t.Run(m, func(t *testing.T) { benchStandbyFailover(t, keys, session, processing, standbys) })
	}
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func benchStandbyFailover(t *testing.T, keys int, session, processing string, standbys int) {
	brokers := kafkatest.Real(t)
	in, out, app := kafkatest.Name(t, "in"), kafkatest.Name(t, "out"), kafkatest.Name(t, "app")
	kafkatest.CreateTopic(t, brokers, in, sbParts)
	spec := sbSpec(t, app, in, out, processing, standbys)
	list := strings.Join(brokers, ",")
	began := time.Now()
	const chunk = 50_000
	for from := 0; from < keys; from += chunk {
		var recs []*kgo.Record
		for u := from; u < min(from+chunk, keys); u++ {
			recs = append(recs, sbRecord(in, u, 0))
		}
		produceSync(t, brokers, recs)
	}
	t.Logf("produced %d records in %s (load %s)", keys, time.Since(began).Round(time.Millisecond), loadAvg())
	began = time.Now()
	w0 := sbStartWorkerWith(t, spec, list, "w0", session)
	w1 := sbStartWorkerWith(t, spec, list, "w1", session)
	sbOwners(t, brokers, app, in)
	sbWaitIdle(t, 30*time.Minute, brokers, app, in, w0, w1)
	owners := sbOwners(t, brokers, app, in)
	moved := owners["w0"]
	t.Logf("state of %d keys built in %s; w0 owns %v, w1 %v (load %s)", keys, time.Since(began).Round(time.Millisecond), moved, owners["w1"], loadAvg())
	if standbys > 0 {
		began = time.Now()
		waitFor(t, 30*time.Minute, "w1's standbys to catch up", func() (bool, string) {
			n := strings.Count(w1.logs(), `msg="standby started`)
			return n >= len(moved), fmt.Sprintf("%d standbys started, want %d", n, len(moved))
		})
		t.Logf("standbys warm %s later", time.Since(began).Round(time.Millisecond))
	}

	// Steady updates of random users, before and after the kill.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		r := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var recs []*kgo.Record
			for range 10 {
				recs = append(recs, sbRecord(in, r.IntN(keys), 1))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = cl.ProduceSync(ctx, recs...).FirstErr()
			cancel()
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(5 * time.Second)
	addr := w1.metricsAddr(t)
	lag := metric(t, addr, "eddy_standby_lag_records")

	before := len(w1.logs())
	killed := time.Now()
	if err := w0.stop(syscall.SIGKILL); err == nil {
		t.Fatal("SIGKILL: the worker exited cleanly?")
	}
	load := loadAvg()
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	probes := map[int32]int64{}
	for _, p := range moved {
		rec := sbRecord(in, int(p), 1) // user p lives in partition p
		res, err := cl.ProduceSync(context.Background(), rec).First()
		if err != nil {
			t.Fatal(err)
		}
		probes[p] = res.Offset
	}
	adm := kadm.NewClient(cl)
	var restoredAt, flowing time.Duration
	waitFor(t, 30*time.Minute, "the probes to be committed", func() (bool, string) {
		if restoredAt == 0 && strings.Contains(w1.logs()[before:], `msg="state restored; processing"`) {
			restoredAt = time.Since(killed)
		}
		offs, err := adm.FetchOffsets(context.Background(), app)
		if err != nil {
			return false, err.Error()
		}
		for p, o := range probes {
			c, ok := offs.Lookup(in, p)
			if !ok || c.At <= o {
				return false, fmt.Sprintf("partition %d committed %d, probe at %d", p, c.At, o)
			}
		}
		flowing = time.Since(killed)
		return true, ""
	})
	if restoredAt == 0 {
		restoredAt = flowing
	}
	var restored int64
	for _, m := range sbRestoredRE.FindAllStringSubmatch(w1.logs()[before:], -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		restored += n
	}
	for _, l := range strings.Split(w1.logs()[before:], "\n") {
		if strings.Contains(l, "partitions assigned") || strings.Contains(l, "partition restored") || strings.Contains(l, "state restored") ||
			strings.Contains(l, "standby stopped") || strings.Contains(l, "orphaned partitions") {
			t.Log(l)
		}
	}
	took := regexp.MustCompile(`msg="state restored; processing" .*?took=(\S+)`).FindStringSubmatch(w1.logs()[before:])
	restoreTook := "?"
	if took != nil {
		restoreTook = took[1]
	}
	t.Logf("RESULT keys=%d processing=%s standby_replicas=%d session=%s: restored %d records (restore took %s), restored at %s, probes committed %s after SIGKILL; standby lag before the kill %v; load at kill %s",
		keys, processing, standbys, session, restored, restoreTook, restoredAt.Round(time.Millisecond), flowing.Round(time.Millisecond), lag, load)
	_ = w1.stop(syscall.SIGTERM)
}
