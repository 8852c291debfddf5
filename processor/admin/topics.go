package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

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
// topic id (zero for a pipeline of several rollups).
func EnsureTopics(ctx context.Context, adm *kadm.Client, spec *topology.Spec) (int32, [16]byte, error) {
	var id [16]byte
	parts, err := sourcePartitions(ctx, adm, spec)
	if err != nil {
		return 0, id, err
	}
	want := spec.Topics(parts)
	// Topics that carry input records take the largest record a source
	// topic accepts. Without the sources' limits they get the broker's
	// default; the shell's size check (processor/limits.go) then
	// dead-letters what does not fit.
	srcMax := sourceMaxMessageBytes(ctx, adm, spec.Source.Topics)
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
			if w.Name == spec.ChangelogTopic() {
				id = d.ID
			}
			if w.Copartitioned && int32(len(d.Partitions)) != parts {
				return 0, id, fmt.Errorf("topic %q has %d partitions but the input has %d: delete it (eddy reset) or restore the input's partition count", w.Name, len(d.Partitions), parts)
			}
			continue
		}
		cfg := topicConfigs(w)
		if w.CarriesInput && srcMax > 0 {
			cfg["max.message.bytes"] = kadm.StringPtr(strconv.FormatInt(min(srcMax+topology.InputHeaderRoom, MaxBatchBytes), 10))
		}
		resp, err := adm.CreateTopic(ctx, parts, -1, cfg, w.Name)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, id, fmt.Errorf("create topic %q: %w", w.Name, err)
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return 0, id, fmt.Errorf("create topic %q: %w", w.Name, resp.Err)
		}
		if w.Name == spec.ChangelogTopic() {
			id = resp.ID
		}
	}
	if id == ([16]byte{}) {
		// Created by someone else in the meantime (TopicAlreadyExists), or
		// not among the topics (a pipeline of several rollups has a
		// changelog per rollup): as listed, possibly zero.
		cl, err := adm.ListTopics(ctx, spec.ChangelogTopic())
		if err != nil {
			return 0, id, err
		}
		id = cl[spec.ChangelogTopic()].ID
	}
	return parts, id, nil
}

// MaxBatchBytes is the largest record batch eddy writes to any topic,
// whatever the topic allows: the shell's producer caps its batches there
// (processor/limits.go: a batch is held in memory while it is built and
// sent, and franz-go's produce requests are at most 100 MiB), and
// EnsureTopics never creates a topic that accepts more.
const MaxBatchBytes = 64 << 20

// sourceMaxMessageBytes returns the largest max.message.bytes of the
// source topics, or 0 when one of them cannot be read.
func sourceMaxMessageBytes(ctx context.Context, adm *kadm.Client, topics []string) int64 {
	rcs, err := DescribeTopicConfigs(ctx, adm, topics...)
	if err != nil {
		return 0
	}
	var m int64
	for _, t := range topics {
		rc, err := rcs.On(t, nil)
		if err != nil || rc.Err != nil {
			return 0
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			v, err := strconv.ParseInt(*c.Value, 10, 64)
			if err != nil {
				return 0
			}
			m = max(m, v)
		}
	}
	return m
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

// DescribeTopicConfigs is kadm's DescribeTopicConfigs, asked again for up
// to five seconds while the broker answers UNKNOWN_TOPIC_OR_PARTITION for
// one of the topics: a topic created a moment ago is listed in metadata
// before the broker's config handler knows it.
func DescribeTopicConfigs(ctx context.Context, adm *kadm.Client, topics ...string) (kadm.ResourceConfigs, error) {
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
