package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// topicConfigs is t's configs as CreateTopics takes them.
func topicConfigs(t topology.TopicInfo) map[string]*string {
	m := make(map[string]*string, len(t.Configs))
	for k, v := range t.Configs {
		m[k] = kadm.StringPtr(v)
	}
	return m
}

// EnsureTopics checks the source topics and creates eddy's topics that are
// missing, with the settings of the pipeline's topic table
// (topology.Spec.Topics): the repartition topic, the changelog (one
// partition per input partition), the output, late, dead-letter and alerts
// topics. Existing topics are not changed (CheckTopics says what is wrong
// with them). It returns the input partition count and the changelog's
// topic id.
func EnsureTopics(ctx context.Context, adm *kadm.Client, spec *topology.Spec) (int32, [16]byte, error) {
	var id [16]byte
	parts, err := sourcePartitions(ctx, adm, spec)
	if err != nil {
		return 0, id, err
	}
	want := spec.Topics(parts)
	// Topics that carry input records take the largest record a source
	// topic accepts. Without the sources' limits they get the broker's
	// default; the size check (limits.go) then dead-letters what does
	// not fit.
	var srcMax int64
	if lim, err := describeLimits(ctx, adm, spec.Source.Topics); err == nil {
		for _, t := range spec.Source.Topics {
			srcMax = max(srcMax, int64(lim.limit(t)))
		}
	}
	var names []string
	for _, w := range want {
		names = append(names, w.Name)
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return 0, id, fmt.Errorf("describe eddy topics: %w", err)
	}
	for _, w := range want {
		if d, ok := existing[w.Name]; ok && d.Err == nil {
			if w.Copartitioned && int32(len(d.Partitions)) != parts {
				return 0, id, fmt.Errorf("topic %q has %d partitions but the input has %d: delete it (eddy reset) or restore the input's partition count", w.Name, len(d.Partitions), parts)
			}
			continue
		}
		cfg := topicConfigs(w)
		if w.CarriesInput && srcMax > 0 {
			cfg["max.message.bytes"] = kadm.StringPtr(strconv.FormatInt(min(srcMax+topology.InputHeaderRoom, int64(maxBatchBytes)), 10))
		}
		resp, err := adm.CreateTopic(ctx, parts, -1, cfg, w.Name)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, id, fmt.Errorf("create topic %q: %w", w.Name, err)
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return 0, id, fmt.Errorf("create topic %q: %w", w.Name, resp.Err)
		}
	}
	cl, err := adm.ListTopics(ctx, spec.ChangelogTopic())
	if err != nil {
		return 0, id, err
	}
	id = cl[spec.ChangelogTopic()].ID
	return parts, id, nil
}

// sourcePartitions checks that the source topics exist and returns the
// input partition count (the highest of them).
func sourcePartitions(ctx context.Context, adm *kadm.Client, spec *topology.Spec) (int32, error) {
	td, err := adm.ListTopics(ctx, spec.Source.Topics...)
	if err != nil {
		return 0, fmt.Errorf("describe source topics: %w", err)
	}
	var parts int32
	for _, t := range spec.Source.Topics {
		d, ok := td[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("source topic %q does not exist: create it, or fix source.topics in the pipeline", t)
		}
		if d.Err != nil {
			return 0, fmt.Errorf("source topic %q: %w", t, d.Err)
		}
		n := int32(len(d.Partitions))
		if !spec.NeedsRepartition() && parts != 0 && n != parts {
			return 0, fmt.Errorf("source topics have different partition counts (%d and %d): with keyed_by_group_key they must match", parts, n)
		}
		parts = max(parts, n)
	}
	return parts, nil
}

// partitioner sends records to the partition set on the record for the
// topics named (changelogs: partition = task), and by key hash (Kafka's
// murmur2, as the Java client) otherwise.
type partitioner struct {
	manual map[string]bool
	def    kgo.Partitioner
	wm     []string // the repartition topics, whose watermark records are partitioned by hand
}

func newPartitioner(manual ...string) partitioner {
	m := make(map[string]bool, len(manual))
	for _, t := range manual {
		m[strings.TrimSpace(t)] = true
	}
	return partitioner{manual: m, def: kgo.StickyKeyPartitioner(nil)}
}

// withWatermarks makes the watermark records of the repartition topics go
// to the partition set on them (watermarks.go); their other records go by
// key hash.
func (p partitioner) withWatermarks(repartition ...string) partitioner {
	p.wm = repartition
	return p
}

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	if p.manual[t] {
		return manualPartitioner{}
	}
	if slices.Contains(p.wm, t) {
		return watermarkPartitioner{p.def.ForTopic(t)}
	}
	return p.def.ForTopic(t)
}

// watermarkPartitioner sends watermark records to the partition set on
// them, other records as def does.
type watermarkPartitioner struct{ def kgo.TopicPartitioner }

func (w watermarkPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return isWatermark(r) || w.def.RequiresConsistency(r)
}

func (w watermarkPartitioner) Partition(r *kgo.Record, n int) int {
	if isWatermark(r) {
		return int(r.Partition)
	}
	return w.def.Partition(r, n)
}

type manualPartitioner struct{}

func (manualPartitioner) RequiresConsistency(*kgo.Record) bool { return true }
func (manualPartitioner) Partition(r *kgo.Record, _ int) int   { return int(r.Partition) }

// describeTopicConfigs is kadm's DescribeTopicConfigs, asked again for up
// to five seconds while the broker answers UNKNOWN_TOPIC_OR_PARTITION for
// one of the topics: a topic created a moment ago is listed in metadata
// before the broker's config handler knows it.
func describeTopicConfigs(ctx context.Context, adm *kadm.Client, topics ...string) (kadm.ResourceConfigs, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
		unknown := slices.ContainsFunc(rcs, func(rc kadm.ResourceConfig) bool {
			return errors.Is(rc.Err, kerr.UnknownTopicOrPartition)
		})
		if err != nil || !unknown || time.Now().After(deadline) {
			return rcs, err
		}
		select {
		case <-ctx.Done():
			return rcs, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
