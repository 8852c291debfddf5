package admin

// Checks of existing topics against what eddy needs of them.
//
// eddy creates missing topics with the settings of the pipeline's topic
// table (topology.Spec.Topics) and never changes a topic that exists: it
// may be shared, or tuned by its owner. An existing topic can still have
// settings that delete what eddy writes before it is read: a repartition
// topic with time retention (its records carry event time, so a replay of
// data older than the retention is deleted before eddy reads it back), an
// output, late or dead-letter topic with CreateTime timestamps and a finite
// retention (results of old windows are deleted minutes after they are
// written). CheckTopics finds them; `eddy run` logs them at start, `eddy
// reset --dry-run` and `eddy describe --brokers` print them, each with the
// command that fixes it. At run time, the shell's retention guard
// (processor/topiccheck.go) warns, rate-limited, when a record eddy writes
// to such a topic is already older than its retention.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/topology"
)

// TopicProblem is a setting of an existing topic that would delete what
// eddy writes to it, or needs from it, before it is read.
type TopicProblem struct {
	Topic   string
	Roles   []string
	Setting string // the config and its value, e.g. "retention.ms=604800000 (7 days)"
	// Effect says what happens to eddy's records, in plain words.
	Effect string
	// Fix is the configs to set ("retention.ms=-1"), for kafka-configs.
	Fix []string
	// Reset: `eddy reset` fixes it too (it recreates the topic with
	// eddy's settings).
	Reset bool
	// TimeRetention: the problem is the topic's time retention, Retention
	// (records with timestamps older than it are deleted).
	TimeRetention bool
	Retention     time.Duration
}

// FixCommand is the kafka-configs command that fixes the problem.
func (p TopicProblem) FixCommand(brokers string) string {
	if brokers == "" {
		brokers = "BROKERS"
	}
	return fmt.Sprintf("kafka-configs.sh --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config %s",
		brokers, p.Topic, strings.Join(p.Fix, ","))
}

// requiredSetting reports whether eddy needs config key of topic t to have
// the table's value (not only as a default when the topic is created):
// the settings that decide whether records expire before they are read.
// `eddy reset` sets them on the internal topics it recreates.
func requiredSetting(t topology.TopicInfo, key string) bool {
	switch key {
	case "cleanup.policy", "retention.ms", "retention.bytes", "message.timestamp.type", "message.timestamp.before.max.ms":
		return t.Internal
	}
	return false
}

// CheckTopics reads the configs of the pipeline's topics that exist and
// returns the settings that would delete what eddy writes or needs. Topics
// that do not exist are not problems (eddy creates them).
func CheckTopics(ctx context.Context, adm *kadm.Client, spec *topology.Spec) ([]TopicProblem, error) {
	infos := spec.Topics(0)
	var names []string
	for _, t := range infos {
		names = append(names, t.Name)
	}
	td, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("describe eddy topics: %w", err)
	}
	var existing []string
	for _, n := range names {
		if d, ok := td[n]; ok && d.Err == nil {
			existing = append(existing, n)
		}
	}
	if len(existing) == 0 {
		return nil, nil
	}
	rcs, err := DescribeTopicConfigs(ctx, adm, existing...)
	if err != nil {
		return nil, fmt.Errorf("configs of %s: %w", strings.Join(existing, ", "), err)
	}
	var out []TopicProblem
	for _, t := range infos {
		if !slices.Contains(existing, t.Name) {
			continue
		}
		rc, err := rcs.On(t.Name, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			return nil, fmt.Errorf("configs of %s: %w", t.Name, err)
		}
		cfg := map[string]string{}
		for _, c := range rc.Configs {
			if c.Value != nil {
				cfg[c.Key] = *c.Value
			}
		}
		out = append(out, checkTopic(t, cfg)...)
	}
	return out, nil
}

// checkTopic compares one existing topic's effective configs (cfg) with
// what eddy needs of it (t).
func checkTopic(t topology.TopicInfo, cfg map[string]string) []TopicProblem {
	var out []TopicProblem
	add := func(p TopicProblem) {
		p.Topic, p.Roles = t.Name, t.Roles
		out = append(out, p)
	}
	policy := cfg["cleanup.policy"]
	deletes := strings.Contains(policy, topology.CleanupDelete)
	compacts := strings.Contains(policy, topology.CleanupCompact)
	retention := time.Duration(-1)
	if ms, err := strconv.ParseInt(cfg["retention.ms"], 10, 64); err == nil && ms >= 0 {
		retention = time.Duration(ms) * time.Millisecond
	}
	bytes, _ := strconv.ParseInt(cfg["retention.bytes"], 10, 64)
	tsType := cfg["message.timestamp.type"]
	switch {
	case t.HasRole(topology.RoleRepartition):
		if deletes && retention >= 0 {
			add(TopicProblem{Setting: "retention.ms=" + cfg["retention.ms"] + " (" + FormatAge(retention) + ")", TimeRetention: true, Retention: retention,
				Effect: "its records carry their event time as timestamp, so the broker deletes records whose event time is older than " +
					FormatAge(retention) + " before eddy reads them back: a replay of data older than that loses records",
				Fix: []string{"retention.ms=-1"}, Reset: true})
		}
		if deletes && bytes > 0 {
			add(TopicProblem{Setting: "retention.bytes=" + cfg["retention.bytes"],
				Effect: "the broker deletes the oldest records of a partition above that size, read by eddy or not",
				Fix:    []string{"retention.bytes=-1"}, Reset: true})
		}
		if compacts {
			add(TopicProblem{Setting: "cleanup.policy=" + policy,
				Effect: "compaction keeps only the last record of each key: records are lost before eddy reads them",
				Fix:    []string{"cleanup.policy=delete"}, Reset: true})
		}
		if tsType == topology.LogAppendTime {
			add(TopicProblem{Setting: "message.timestamp.type=" + tsType,
				Effect: "the broker replaces each record's event time with the time it was written: windows would be computed from write times",
				Fix:    []string{"message.timestamp.type=CreateTime"}, Reset: true})
		}
	case t.HasRole(topology.RoleChangelog):
		if deletes {
			add(TopicProblem{Setting: "cleanup.policy=" + policy,
				Effect: "the broker deletes old window state by time: a restore rebuilds incomplete windows",
				Fix:    []string{"cleanup.policy=compact"}, Reset: true})
		}
	default:
		if deletes && retention >= 0 && tsType != topology.LogAppendTime {
			add(TopicProblem{Setting: "message.timestamp.type=" + tsType + " with retention.ms=" + cfg["retention.ms"] + " (" + FormatAge(retention) + ")",
				TimeRetention: true, Retention: retention,
				Effect: "eddy writes its " + strings.Join(t.Roles, " and ") + " records with the window's or the event's time as timestamp, " +
					"and the broker deletes records whose timestamp is older than " + FormatAge(retention) +
					": results of a replay of data older than that are deleted minutes after they are written, before readers see them",
				Fix: []string{"message.timestamp.type=LogAppendTime"}})
		}
	}
	return out
}

// FormatAge is a duration in days when it is a whole number of them.
func FormatAge(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		if d == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// PrintTopicProblems writes problems in plain words, each with the command
// that fixes it; nothing when there are none. brokers goes into the
// commands.
func PrintTopicProblems(w io.Writer, problems []TopicProblem, brokers string) {
	if len(problems) == 0 {
		return
	}
	fmt.Fprintln(w, "Topic settings that would delete what eddy writes before it is read:")
	for _, p := range problems {
		fmt.Fprintf(w, "  %s (%s): %s\n", p.Topic, strings.Join(p.Roles, ", "), p.Setting)
		fmt.Fprintf(w, "    %s.\n", p.Effect)
		fmt.Fprintf(w, "    fix: %s\n", p.FixCommand(brokers))
		if p.Reset {
			fmt.Fprintln(w, "    or: eddy reset, which recreates the topic with eddy's settings")
		}
	}
}
