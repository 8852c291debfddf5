package admin

import (
	"context"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/topology"
)

// TestEnsureTopics: the pipeline's missing topics are created with the
// input's partition count; the ones that carry input records accept the
// largest record of the source topic plus eddy's header room; the
// changelog's topic id is returned; a second call changes nothing.
func TestEnsureTopics(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Kfake(t)
	ctx := context.Background()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	src := kafkatest.Name(t, "in")
	const srcMax = 3 << 20
	if _, err := adm.CreateTopic(ctx, 3, -1, map[string]*string{"max.message.bytes": kadm.StringPtr(strconv.Itoa(srcMax))}, src); err != nil {
		t.Fatal(err)
	}
	spec, err := topology.Parse([]byte(`app: ` + kafkatest.Name(t, "app") + `
source: {topics: [` + src + `]}
key: [k]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: n, op: count}
output: {topic: ` + kafkatest.Name(t, "out") + `}
`))
	if err != nil {
		t.Fatal(err)
	}
	parts, id, err := EnsureTopics(ctx, adm, spec)
	if err != nil {
		t.Fatal(err)
	}
	if parts != 3 {
		t.Errorf("input partitions %d, want 3", parts)
	}
	want := spec.Topics(3)
	var names []string
	for _, w := range want {
		names = append(names, w.Name)
	}
	// A new client: the first may answer from the metadata it cached
	// before the topics existed.
	adm = kadm.NewClient(kafkatest.Client(t, brokers))
	td, err := adm.ListTopics(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	if got := td[spec.ChangelogTopic()].ID; [16]byte(got) != id || id == ([16]byte{}) {
		t.Errorf("changelog id %x, listed %x", id, got)
	}
	rcs, err := DescribeTopicConfigs(ctx, adm, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		d, ok := td[w.Name]
		if !ok || d.Err != nil || len(d.Partitions) != 3 {
			t.Errorf("%s: %v, %d partitions; want created with 3", w.Name, d.Err, len(d.Partitions))
			continue
		}
		rc, err := rcs.On(w.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rc.Configs {
			if c.Key == "max.message.bytes" && w.CarriesInput && (c.Value == nil || *c.Value != strconv.Itoa(srcMax+topology.InputHeaderRoom)) {
				t.Errorf("%s carries input: max.message.bytes %v, want %d", w.Name, c.MaybeValue(), srcMax+topology.InputHeaderRoom)
			}
		}
	}
	if _, id2, err := EnsureTopics(ctx, adm, spec); err != nil || id2 != id {
		t.Errorf("second EnsureTopics: id %x, %v; want the same topics kept", id2, err)
	}
}
