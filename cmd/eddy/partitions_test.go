package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaSourcePartitionsAdded: a user adds partitions to the source
// topic while eddy runs (two become four) and producers write to the new
// ones at once. A task is a partition of the repartition topic (or of the
// source, when it is keyed by the grouping key) and of the changelog, made
// with two partitions: eddy cannot take the new ones in. Every worker must
// stop within seconds with an error that names the topic and both counts
// and says what to do, not leave the new partitions unread until its
// client's next metadata refresh (five minutes) and then read them behind
// every window; and a worker started again refuses to start, with the
// error it has always given. With and without a repartition topic.
func TestKafkaSourcePartitionsAdded(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			t.Parallel()
			r := newWMRun(t, brokers, wmOpts{parts: 2, keys: 4, keyParts: []int32{0, 1, 2, 3}, keyed: keyed, settings: "idle_timeout: 10s\n"})
			ws := []*worker{r.start(t, t.TempDir()), r.start(t, t.TempDir())}
			ready(t, ws...)
			r.steady(t, 4*time.Second, 100, func(k int) bool { return k < 2 }, nil)
			adm := kadm.NewClient(kafkatest.Client(t, r.brokers))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := adm.CreatePartitions(ctx, 2, r.in); err != nil {
				t.Fatalf("add partitions: %v", err)
			}
			added := time.Now()
			want := fmt.Sprintf("partitions were added to source topic %q while the worker ran", r.in)
			stopped := make([]bool, len(ws))
			for n := 0; n < len(ws); {
				if time.Since(added) > 30*time.Second {
					t.Fatalf("a worker still runs 30s after partitions were added to its source topic")
				}
				// Producers write to the old and the new partitions meanwhile.
				now := time.Now().UnixMilli()
				r.produce(t, append(r.gen(0, now, now+200, 100), r.gen(2, now, now+200, 100)...))
				time.Sleep(200 * time.Millisecond)
				for i, w := range ws {
					if stopped[i] {
						continue
					}
					select {
					case err := <-w.done:
						w.exited, stopped[i] = true, true
						n++
						if err == nil {
							t.Errorf("worker %d exited with status 0, want an error", i)
						}
						if !strings.Contains(w.logs(), want) || !strings.Contains(w.logs(), "it has 4 partitions now, and the pipeline's topics 2") {
							t.Errorf("worker %d: no error saying %q with both counts in its log:\n%s", i, want, w.logs())
						}
					default:
					}
				}
			}
			t.Logf("both workers stopped %s after the partitions were added", time.Since(added).Round(100*time.Millisecond))
			w := r.start(t, t.TempDir())
			select {
			case err := <-w.done:
				w.exited = true
				if err == nil || !strings.Contains(w.logs(), "partitions but the input has 4") {
					t.Errorf("a worker started again: exit %v, want the start-up error naming the counts; log:\n%s", err, w.logs())
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("a worker started again after partitions were added still runs after 60s")
			}
		})
	}
}
