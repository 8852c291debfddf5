package processor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// Topic configurations eddy creates its internal topics with.
var (
	changelogConfig = map[string]*string{
		"cleanup.policy": kadm.StringPtr("compact"),
		// Compact reasonably soon so restores stay short, but never the
		// newest records (an unfinished flush at the tail must stay
		// ordered after the records it would overwrite).
		"segment.ms":                kadm.StringPtr("3600000"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.3"),
	}
	repartitionConfig = map[string]*string{
		"cleanup.policy": kadm.StringPtr("delete"),
		"retention.ms":   kadm.StringPtr("604800000"), // 7 days
	}
	deleteConfig = map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}
)

// EnsureTopics checks the source topics and creates eddy's topics that are
// missing: the changelog (compacted, one partition per input partition),
// the repartition topic, the output, late and dead-letter topics. It
// returns the input partition count and the changelog's topic id.
func EnsureTopics(ctx context.Context, adm *kadm.Client, spec *topology.Spec) (int32, [16]byte, error) {
	var id [16]byte
	td, err := adm.ListTopics(ctx, spec.Source.Topics...)
	if err != nil {
		return 0, id, fmt.Errorf("describe source topics: %w", err)
	}
	var parts int32
	for _, t := range spec.Source.Topics {
		d, ok := td[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return 0, id, fmt.Errorf("source topic %q does not exist: create it, or fix source.topics in the pipeline", t)
		}
		if d.Err != nil {
			return 0, id, fmt.Errorf("source topic %q: %w", t, d.Err)
		}
		n := int32(len(d.Partitions))
		if !spec.NeedsRepartition() && parts != 0 && n != parts {
			return 0, id, fmt.Errorf("source topics have different partition counts (%d and %d): with keyed_by_group_key they must match", parts, n)
		}
		parts = max(parts, n)
	}
	want := []struct {
		name string
		cfg  map[string]*string
		must bool // partition count must equal parts
	}{
		{spec.ChangelogTopic(), changelogConfig, true},
		{spec.Output.Topic, deleteConfig, false},
		{spec.LateTopic, deleteConfig, false},
		{spec.DeadLetterTopic, deleteConfig, false},
	}
	if t := spec.AlertsTopic(); t != "" {
		want = append(want, struct {
			name string
			cfg  map[string]*string
			must bool
		}{t, deleteConfig, false})
	}
	if spec.NeedsRepartition() {
		want = append(want, struct {
			name string
			cfg  map[string]*string
			must bool
		}{spec.RepartitionTopic(), repartitionConfig, true})
	}
	var names []string
	for _, w := range want {
		names = append(names, w.name)
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return 0, id, fmt.Errorf("describe eddy topics: %w", err)
	}
	for _, w := range want {
		if d, ok := existing[w.name]; ok && d.Err == nil {
			if w.must && int32(len(d.Partitions)) != parts {
				return 0, id, fmt.Errorf("topic %q has %d partitions but the input has %d: delete it (eddy reset) or restore the input's partition count", w.name, len(d.Partitions), parts)
			}
			continue
		}
		resp, err := adm.CreateTopic(ctx, parts, -1, w.cfg, w.name)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, id, fmt.Errorf("create topic %q: %w", w.name, err)
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return 0, id, fmt.Errorf("create topic %q: %w", w.name, resp.Err)
		}
	}
	cl, err := adm.ListTopics(ctx, spec.ChangelogTopic())
	if err != nil {
		return 0, id, err
	}
	id = cl[spec.ChangelogTopic()].ID
	return parts, id, nil
}

// partitioner sends records to the partition set on the record for the
// topics named (changelogs: partition = task), and by key hash (Kafka's
// murmur2, as the Java client) otherwise.
type partitioner struct {
	manual map[string]bool
	def    kgo.Partitioner
}

func newPartitioner(manual ...string) partitioner {
	m := make(map[string]bool, len(manual))
	for _, t := range manual {
		m[strings.TrimSpace(t)] = true
	}
	return partitioner{manual: m, def: kgo.StickyKeyPartitioner(nil)}
}

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	if p.manual[t] {
		return manualPartitioner{}
	}
	return p.def.ForTopic(t)
}

type manualPartitioner struct{}

func (manualPartitioner) RequiresConsistency(*kgo.Record) bool { return true }
func (manualPartitioner) Partition(r *kgo.Record, _ int) int   { return int(r.Partition) }
