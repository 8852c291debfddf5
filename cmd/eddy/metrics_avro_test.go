package main

// Derived fields, a lookup table and top_k with Avro in and out, through
// `eddy run` and the embedded registry on the real broker: the derived
// field is typed against the producers' schema, the result schema eddy
// registers has top_k as an array of {value, count} records, and the
// results equal an independent computation over the input.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/schema"
)

func TestKafkaMetricsAvro(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	reg := startRegistry(t, brokers, "127.0.0.1:0")
	in, owners, out, app := kafkatest.Name(t, "in"), kafkatest.Name(t, "owners"), kafkatest.Name(t, "out"), kafkatest.Name(t, "app")
	kafkatest.CreateTopic(t, brokers, in, 2)
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	compact := "compact"
	if r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": &compact}, owners); err != nil || r.Err != nil {
		t.Fatalf("create %s: %v %v", owners, err, r.Err)
	}
	regClient := schema.NewClient(reg.url())
	defer regClient.Close()
	enc, err := schema.NewEncoder(ctx, regClient, in+"-value", requestSchema)
	if err != nil {
		t.Fatal(err)
	}

	owner := map[string]string{"/pay": "payments", "/cart": "payments", "/search": "discovery"}
	var recs []*kgo.Record
	for e, team := range owner {
		recs = append(recs, &kgo.Record{Topic: owners, Key: []byte(e), Value: []byte(`{"team":"` + team + `"}`)})
	}
	produceSync(t, brokers, recs)

	type ev struct {
		ts              int64
		endpoint        string
		status, latency int
	}
	rng := rand.New(rand.NewPCG(4, 20))
	base := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	endpoints := []string{"/pay", "/cart", "/search", "/login"}
	var evs []ev
	recs = recs[:0]
	for i := 0; i < 600; i++ {
		e := ev{ts: base + rng.Int64N(120_000), endpoint: endpoints[rng.IntN(len(endpoints))],
			status: []int{200, 200, 404, 500}[rng.IntN(4)], latency: rng.IntN(900)}
		evs = append(evs, e)
		b, err := enc.Encode(map[string]any{"request_id": fmt.Sprint(i), "ts": time.UnixMilli(e.ts).UTC(), "service": "api",
			"endpoint": e.endpoint, "status": e.status, "latency_ms": e.latency})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: in, Partition: int32(i % 2), Value: b})
	}

	spec := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf(`app: %s
source: {topics: [%s], format: avro}
time: {field: ts}
derived:
  - {name: status_class, expr: "int(status / 100)"}
lookups:
  - {name: owners, topic: %s, on: endpoint, fields: [team], defaults: {team: unowned}}
key: [team, status_class]
window: {type: tumbling, size: 1m, grace: 30m}
emit: update
processing: exactly_once
commit_interval: 200ms
aggregates:
  - {name: requests, op: count}
  - {name: top_endpoints, op: top_k, k: 2, field: endpoint, where: "latency_ms > 100"}
output: {topic: %s, format: avro}
`, app, in, owners, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, spec, strings.Join(brokers, ","), t.TempDir(), "EDDY_REGISTRY_URL="+reg.url())
	produceSync(t, brokers, recs)

	// The reference: plain loops over the input.
	type agg struct {
		n   int
		top map[string]int
	}
	want := map[string]*agg{}
	for _, e := range evs {
		team, ok := owner[e.endpoint]
		if !ok {
			team = "unowned"
		}
		k := fmt.Sprintf("%s|%d|%d", team, e.status/100, e.ts-e.ts%60_000)
		if want[k] == nil {
			want[k] = &agg{top: map[string]int{}}
		}
		want[k].n++
		if e.latency > 100 {
			want[k].top[e.endpoint]++
		}
	}
	wantText := map[string]string{}
	for k, a := range want {
		type kv struct {
			v string
			n int
		}
		var es []kv
		for v, n := range a.top {
			es = append(es, kv{v, n})
		}
		sort.Slice(es, func(i, j int) bool { return es[i].n > es[j].n || es[i].n == es[j].n && es[i].v < es[j].v })
		if len(es) > 2 {
			es = es[:2]
		}
		wantText[k] = fmt.Sprintf("n=%d top=%v", a.n, es)
	}

	dec := schema.NewDecoder(regClient, schema.PinSubject(out+"-value"))
	waitFor(t, 2*time.Minute, "Avro results equal to the reference", func() (bool, string) {
		got := map[string]string{}
		for _, r := range kafkatest.ReadAll(t, brokers, out, true) {
			m, err := dec.Decode(ctx, r.Value)
			if err != nil {
				return false, err.Error()
			}
			type kv struct {
				v string
				n int
			}
			var es []kv
			list, ok := m["top_endpoints"].([]any)
			if !ok {
				return false, fmt.Sprintf("top_endpoints is %T", m["top_endpoints"])
			}
			for _, x := range list {
				e := x.(map[string]any)
				es = append(es, kv{e["value"].(string), int(e["count"].(int64))})
			}
			ws := m["window_start"].(time.Time).UnixMilli()
			got[fmt.Sprintf("%s|%s|%d", m["team"], m["status_class"], ws)] = fmt.Sprintf("n=%d top=%v", m["requests"].(int64), es)
		}
		var diff []string
		for k, v := range wantText {
			if got[k] != v {
				diff = append(diff, fmt.Sprintf("%s: got %q, want %q", k, got[k], v))
			}
		}
		for k := range got {
			if _, ok := wantText[k]; !ok {
				diff = append(diff, "unexpected "+k)
			}
		}
		sort.Strings(diff)
		return len(diff) == 0, strings.Join(diff, "; ")
	})
	latest, err := regClient.Latest(ctx, out+"-value")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(latest.Text, `"name":"top_endpoints","type":{"type":"array","items":{"type":"record","name":"top_endpoints_entry"`) {
		t.Errorf("registered result schema: %s", latest.Text)
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy run: %v\n%s", err, w.logs())
	}
}
