package admin

// (Long: the plan, its explanation to the user and its execution must
// agree step by step, so they stay in one file.)
//
// Reset: rebuild a pipeline's results from an earlier point of its input.
//
// A reset changes three things the next `eddy run` reads, and nothing else:
//
//  1. the internal topics (the repartition topic and the changelog) are
//     deleted and recreated empty, with the same partition count,
//     replication factor and topic-level configs, except the settings that
//     decide whether records expire before eddy reads them
//     (requiredSetting): those take the values of the topic table
//     (topology.Spec.Topics), so an old repartition topic with time
//     retention comes back without it. The changelog holds the
//     window state, the commit markers with stream time and the input
//     position the state reflects; a new changelog has a new topic id, so
//     every worker's local state (a checkpoint naming the old id) is stale
//     and is wiped and rebuilt on its next start: no pod's disk needs a visit.
//     Recreating the changelog also resets stream time, so a replay to an
//     earlier time does not find every record late.
//  2. the group's committed offsets of the input topics move to the target;
//  3. the group's committed offsets of the repartition topic become 0, the
//     start of the recreated topic.
//
// 2 and 3 are one OffsetCommit request, the last step: a reset interrupted
// before it leaves the input offsets where they were, and the same command
// run again redoes every step (deleting an empty recreated topic again is
// harmless). The group must be empty throughout: a running worker would
// keep producing to the old topics and commit over the new offsets. The
// check is made before any change and again before the commit; the broker
// itself refuses an admin offset commit to a group with members.
//
// Output, late and dead-letter topics are not touched: downstream consumers
// see the replayed final results again.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eddy-streams/eddy/topology"
)

// ErrGroupActive is returned (wrapped in *GroupActiveError) when a reset is
// attempted while the pipeline's consumer group has members.
var ErrGroupActive = errors.New("consumer group has active members")

// GroupActiveError names the live members of the group.
type GroupActiveError struct {
	Group   string
	State   string
	Members []string // "member-id (instance i, client c, host h)"
}

func (e *GroupActiveError) Error() string {
	return fmt.Sprintf("refusing to reset: consumer group %q is %s with %d active member(s):\n  %s\n"+
		"stop every `eddy run` of this pipeline first and try again (a worker started with --instance-id "+
		"stays a member until its session timeout expires after it stops)",
		e.Group, e.State, len(e.Members), strings.Join(e.Members, "\n  "))
}

func (e *GroupActiveError) Unwrap() error { return ErrGroupActive }

// ResetTarget says where the input offsets go. Exactly one of Earliest,
// Time and Offsets is set.
type ResetTarget struct {
	Earliest bool
	// Time: each partition's first offset whose record timestamp is at or
	// after it (Kafka's offsets-for-times); the end offset if none is.
	Time time.Time
	// Offsets: explicit offsets; input partitions not listed keep their
	// committed offset (their earliest offset if they have none).
	Offsets map[string]map[int32]int64
}

// String describes the target in words.
func (t ResetTarget) String() string {
	switch {
	case t.Earliest:
		return "the earliest offsets"
	case !t.Time.IsZero():
		return "the first offsets at or after " + t.Time.UTC().Format(time.RFC3339Nano)
	default:
		return "the given offsets"
	}
}

// InputReset is the plan for one input partition.
type InputReset struct {
	Topic     string
	Partition int32
	Current   int64 // committed offset; -1 if none
	New       int64
	End       int64  // end offset (high watermark) when planned
	Note      string // why New is what it is, when it is not obvious
}

// Reprocess is the number of offsets from New to the end: the records to
// process again (transaction markers included, for transactional input).
func (r InputReset) Reprocess() int64 { return max(0, r.End-r.New) }

// TopicReset is the plan for one internal topic: delete and recreate.
type TopicReset struct {
	Name       string
	Purpose    string
	Exists     bool
	Partitions int32
	Replicas   int16              // -1: the broker's default
	Configs    map[string]*string // topic-level configs to recreate it with
	Records    int64              // offsets between start and end, when it exists
	// Changed lists the settings of the existing topic that eddy needs
	// otherwise and sets on the recreated one ("retention.ms=-1 (was
	// 604800000)").
	Changed []string
}

// ResetPlan is everything a reset will change.
type ResetPlan struct {
	App         string
	Group       string
	Target      ResetTarget
	Inputs      []InputReset
	Topics      []TopicReset
	Repartition string   // committed offsets set to 0 after recreation; "" if none
	Untouched   []string // output, late and dead-letter topics
	// Problems are the settings of existing topics that would delete what
	// eddy writes before it is read (CheckTopics). Those of the internal
	// topics are fixed by the reset (Topics[i].Changed); the others are
	// printed with the command that fixes them.
	Problems []TopicProblem
	// Brokers goes into the printed fix commands ("" prints BROKERS).
	Brokers string
}

// CheckGroupEmpty returns a *GroupActiveError if group has members.
func CheckGroupEmpty(ctx context.Context, adm *kadm.Client, group string) error {
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return fmt.Errorf("describe consumer group %q: %w", group, err)
	}
	g, ok := gs[group]
	if !ok {
		return nil
	}
	if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
		return fmt.Errorf("describe consumer group %q: %w", group, g.Err)
	}
	if len(g.Members) == 0 {
		return nil
	}
	e := &GroupActiveError{Group: group, State: g.State}
	for _, m := range g.Members {
		d := m.MemberID + " (client " + m.ClientID + ", host " + m.ClientHost
		if m.InstanceID != nil {
			d += ", instance " + *m.InstanceID
		}
		e.Members = append(e.Members, d+")")
	}
	return e
}

// PlanReset checks that the group is empty and computes what a reset to
// target changes. It changes nothing.
func PlanReset(ctx context.Context, adm *kadm.Client, spec *topology.Spec, target ResetTarget) (*ResetPlan, error) {
	group := spec.GroupID()
	if err := CheckGroupEmpty(ctx, adm, group); err != nil {
		return nil, err
	}
	p := &ResetPlan{App: spec.App, Group: group, Target: target}
	for _, ti := range spec.Topics(0) {
		if !ti.Internal {
			p.Untouched = append(p.Untouched, ti.Name)
		}
	}
	problems, err := CheckTopics(ctx, adm, spec)
	if err != nil {
		return nil, err
	}
	p.Problems = problems

	// Input partitions, their bounds and committed offsets.
	td, err := adm.ListTopics(ctx, spec.Source.Topics...)
	if err != nil {
		return nil, fmt.Errorf("describe source topics: %w", err)
	}
	var parts int32
	for _, t := range spec.Source.Topics {
		d, ok := td[t]
		if !ok || d.Err != nil {
			return nil, fmt.Errorf("source topic %q: does not exist or cannot be described (%v)", t, d.Err)
		}
		parts = max(parts, int32(len(d.Partitions)))
	}
	starts, err := listOffsets(adm.ListStartOffsets(ctx, spec.Source.Topics...))
	if err != nil {
		return nil, fmt.Errorf("start offsets of the source topics: %w", err)
	}
	ends, err := listOffsets(adm.ListEndOffsets(ctx, spec.Source.Topics...))
	if err != nil {
		return nil, fmt.Errorf("end offsets of the source topics: %w", err)
	}
	var byTime kadm.ListedOffsets
	if !target.Time.IsZero() {
		if byTime, err = listOffsets(adm.ListOffsetsAfterMilli(ctx, target.Time.UnixMilli(), spec.Source.Topics...)); err != nil {
			return nil, fmt.Errorf("offsets for time %s: %w", target.Time.UTC().Format(time.RFC3339), err)
		}
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %q: %w", group, err)
	}
	for t, ps := range target.Offsets {
		if !slices.Contains(spec.Source.Topics, t) {
			return nil, fmt.Errorf("--to-offsets names topic %q, which is not a source topic of the pipeline (%s)", t, strings.Join(spec.Source.Topics, ", "))
		}
		for pn := range ps {
			if _, ok := ends.Lookup(t, pn); !ok {
				return nil, fmt.Errorf("--to-offsets names %s:%d, but %s has %d partitions", t, pn, t, len(td[t].Partitions))
			}
		}
	}
	for _, t := range spec.Source.Topics {
		for _, pd := range td[t].Partitions.Sorted() {
			so, _ := starts.Lookup(t, pd.Partition)
			eo, _ := ends.Lookup(t, pd.Partition)
			r := InputReset{Topic: t, Partition: pd.Partition, Current: -1, End: eo.Offset}
			if c, ok := committed.Lookup(t, pd.Partition); ok && c.Err == nil && c.At >= 0 {
				r.Current = c.At
			}
			switch {
			case target.Earliest:
				r.New = so.Offset
			case !target.Time.IsZero():
				lo, _ := byTime.Lookup(t, pd.Partition)
				r.New = lo.Offset
				if r.New >= eo.Offset {
					r.Note = "no record at or after the time: end"
				}
			default:
				o, ok := target.Offsets[t][pd.Partition]
				switch {
				case !ok && r.Current >= 0:
					r.New, r.Note = r.Current, "not listed: unchanged"
				case !ok:
					r.New, r.Note = so.Offset, "not listed, never committed: earliest"
				case o < so.Offset:
					r.New, r.Note = so.Offset, fmt.Sprintf("%d is before the start: earliest", o)
				case o > eo.Offset:
					r.New, r.Note = eo.Offset, fmt.Sprintf("%d is past the end: end", o)
				default:
					r.New = o
				}
			}
			if r.Current >= 0 && r.Current < so.Offset && r.Note == "" {
				r.Note = "committed offset was already deleted by retention"
			}
			p.Inputs = append(p.Inputs, r)
		}
	}

	// Internal topics: delete and recreate like they are, except for the
	// settings eddy needs (required: an old repartition topic with time
	// retention comes back without it).
	type internal struct {
		name, purpose string
		info          topology.TopicInfo
	}
	var ins []internal
	for _, ti := range spec.InternalTopics(parts) {
		purpose := "changelog (window state, stream time)"
		if ti.HasRole(topology.RoleRepartition) {
			purpose = "repartition"
			p.Repartition = ti.Name
		}
		ins = append(ins, internal{ti.Name, purpose, ti})
	}
	var names []string
	for _, in := range ins {
		names = append(names, in.name)
	}
	itd, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("describe internal topics: %w", err)
	}
	var existing []string
	for _, n := range names {
		if d, ok := itd[n]; ok && d.Err == nil {
			existing = append(existing, n)
		}
	}
	var cfgs kadm.ResourceConfigs
	istarts, iends := kadm.ListedOffsets{}, kadm.ListedOffsets{}
	if len(existing) > 0 {
		if cfgs, err = DescribeTopicConfigs(ctx, adm, existing...); err != nil {
			return nil, fmt.Errorf("configs of %s: %w", strings.Join(existing, ", "), err)
		}
		if istarts, err = listOffsets(adm.ListStartOffsets(ctx, existing...)); err != nil {
			return nil, err
		}
		if iends, err = listOffsets(adm.ListEndOffsets(ctx, existing...)); err != nil {
			return nil, err
		}
	}
	for _, in := range ins {
		tr := TopicReset{Name: in.name, Purpose: in.purpose, Partitions: parts, Replicas: -1, Configs: topicConfigs(in.info)}
		if d, ok := itd[in.name]; ok && d.Err == nil {
			tr.Exists = true
			if len(d.Partitions) > 0 {
				tr.Replicas = int16(len(d.Partitions.Sorted()[0].Replicas))
			}
			rc, err := cfgs.On(in.name, nil)
			if err != nil || rc.Err != nil {
				return nil, fmt.Errorf("configs of %s: %v %v", in.name, err, rc.Err)
			}
			tr.Configs = map[string]*string{}
			for _, c := range rc.Configs {
				if c.Source == kmsg.ConfigSourceDynamicTopicConfig && c.Value != nil && !c.Sensitive {
					tr.Configs[c.Key] = c.Value
				}
			}
			for k, v := range in.info.Configs { // eddy's own settings, if someone removed them
				if _, ok := tr.Configs[k]; !ok || requiredSetting(in.info, k) {
					if ok && *tr.Configs[k] != v {
						tr.Changed = append(tr.Changed, fmt.Sprintf("%s=%s (was %s)", k, v, *tr.Configs[k]))
					}
					tr.Configs[k] = kadm.StringPtr(v)
				}
			}
			slices.Sort(tr.Changed)
			for _, pd := range d.Partitions {
				s, _ := istarts.Lookup(in.name, pd.Partition)
				e, _ := iends.Lookup(in.name, pd.Partition)
				tr.Records += max(0, e.Offset-s.Offset)
			}
		}
		p.Topics = append(p.Topics, tr)
	}
	return p, nil
}

func listOffsets(l kadm.ListedOffsets, err error) (kadm.ListedOffsets, error) {
	if err == nil {
		err = l.Error()
	}
	return l, err
}

// Print writes the plan: per input partition the committed offset, the new
// one and the records to process again; the topics recreated; the topics
// left alone.
func (p *ResetPlan) Print(w io.Writer) {
	fmt.Fprintf(w, "Reset of app %q (consumer group %q) to %s.\n\n", p.App, p.Group, p.Target)
	fmt.Fprintln(w, "Input offsets:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TOPIC\tPARTITION\tCURRENT\tNEW\tEND\tTO REPROCESS\t")
	var total int64
	for _, r := range p.Inputs {
		cur := "-"
		if r.Current >= 0 {
			cur = fmt.Sprint(r.Current)
		}
		note := ""
		if r.Note != "" {
			note = "(" + r.Note + ")"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%d\t%s\n", r.Topic, r.Partition, cur, r.New, r.End, r.Reprocess(), note)
		total += r.Reprocess()
	}
	tw.Flush()
	fmt.Fprintf(w, "  %d records to process again (offsets from NEW to END).\n\n", total)
	fmt.Fprintln(w, "Internal topics deleted and recreated empty (same partitions, replication and configs):")
	for _, t := range p.Topics {
		how := fmt.Sprintf("%d records dropped", t.Records)
		if !t.Exists {
			how = "missing: created with eddy's settings"
		}
		fmt.Fprintf(w, "  %s: %s, %d partitions; %s\n", t.Name, t.Purpose, t.Partitions, how)
		if len(t.Changed) > 0 {
			fmt.Fprintf(w, "    recreated with eddy's settings where they differ: %s\n", strings.Join(t.Changed, ", "))
		}
	}
	fmt.Fprintln(w, "  Every worker's local state becomes stale (the changelog's topic id changes) and is rebuilt on its next start.")
	if p.Repartition != "" {
		fmt.Fprintf(w, "  Committed offsets of %s: set to 0 (the start of the recreated topic).\n", p.Repartition)
	}
	fmt.Fprintf(w, "\nNot touched: %s. Downstream consumers will see the final results of replayed windows again.\n",
		strings.Join(p.Untouched, ", "))
	var left []TopicProblem
	for _, pr := range p.Problems {
		if !pr.Reset {
			left = append(left, pr)
		}
	}
	if len(left) > 0 {
		fmt.Fprintln(w)
		PrintTopicProblems(w, left, p.Brokers)
		fmt.Fprintln(w, "  The reset does not change these topics: fix them before `eddy run`, or the replayed results are lost to readers.")
	}
}

// ResetStep names a step of a reset, as printed.
type ResetStep string

// ResetError says which steps of a reset were done before one failed.
type ResetError struct {
	Done   []ResetStep
	Failed ResetStep
	Err    error
}

func (e *ResetError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reset incomplete: %s failed: %v\n", e.Failed, e.Err)
	if len(e.Done) == 0 {
		b.WriteString("nothing was changed")
	} else {
		b.WriteString("done before the failure:\n")
		for _, d := range e.Done {
			fmt.Fprintf(&b, "  - %s\n", d)
		}
		b.WriteString("not done: the input offsets were not moved, so the pipeline is half-reset. Do not start `eddy run`: " +
			"run the same `eddy reset` command again to finish (every step is safe to repeat)")
	}
	return b.String()
}

func (e *ResetError) Unwrap() error { return e.Err }

// ExecuteReset applies plan: delete the internal topics and wait until
// they are gone, recreate them, then commit the new input offsets and the
// repartition offsets in one request. progress is called after each step.
// On failure it returns a *ResetError naming the steps done.
func ExecuteReset(ctx context.Context, adm *kadm.Client, plan *ResetPlan, progress func(ResetStep)) error {
	var done []ResetStep
	step := func(s ResetStep, fn func() error) error {
		if err := fn(); err != nil {
			return &ResetError{Done: done, Failed: s, Err: err}
		}
		done = append(done, s)
		if progress != nil {
			progress(s)
		}
		return nil
	}
	if err := step(ResetStep(fmt.Sprintf("check that group %q has no members", plan.Group)), func() error {
		return CheckGroupEmpty(ctx, adm, plan.Group)
	}); err != nil {
		return err
	}
	var names, existing []string
	for _, t := range plan.Topics {
		names = append(names, t.Name)
		if t.Exists {
			existing = append(existing, t.Name)
		}
	}
	if len(existing) > 0 {
		if err := step(ResetStep("delete "+strings.Join(existing, ", ")), func() error {
			return deleteTopics(ctx, adm, existing)
		}); err != nil {
			return err
		}
	}
	verb := "recreate "
	if len(existing) == 0 {
		verb = "create "
	}
	if err := step(ResetStep(verb+strings.Join(names, ", ")+" (empty)"), func() error {
		return recreateTopics(ctx, adm, plan.Topics)
	}); err != nil {
		return err
	}
	if err := step(ResetStep(fmt.Sprintf("check again that group %q has no members", plan.Group)), func() error {
		return CheckGroupEmpty(ctx, adm, plan.Group)
	}); err != nil {
		return err
	}
	return step(ResetStep("commit the new input offsets"+repartitionNote(plan)), func() error {
		offs := kadm.Offsets{}
		for _, r := range plan.Inputs {
			offs.AddOffset(r.Topic, r.Partition, r.New, -1)
		}
		if plan.Repartition != "" {
			for _, t := range plan.Topics {
				if t.Name == plan.Repartition {
					for p := int32(0); p < t.Partitions; p++ {
						offs.AddOffset(t.Name, p, 0, -1)
					}
				}
			}
		}
		return retry(ctx, func() error {
			resp, err := adm.CommitOffsets(ctx, plan.Group, offs)
			if err == nil {
				err = resp.Error()
			}
			return err
		})
	})
}

func repartitionNote(p *ResetPlan) string {
	if p.Repartition == "" {
		return ""
	}
	return " and offset 0 of " + p.Repartition
}

// deleteTopics deletes topics and waits until the metadata no longer lists
// them (deletion is asynchronous). A topic already gone is not an error.
func deleteTopics(ctx context.Context, adm *kadm.Client, topics []string) error {
	resp, err := adm.DeleteTopics(ctx, topics...)
	if err != nil {
		return err
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("delete %s: %w", r.Topic, r.Err)
		}
	}
	return retry(ctx, func() error {
		td, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			return err
		}
		var left []string
		for _, t := range topics {
			if d, ok := td[t]; ok && d.Err == nil {
				left = append(left, t)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still listed after deletion: %s", strings.Join(left, ", "))
		}
		return nil
	})
}

// recreateTopics creates the topics as planned and waits until every
// partition has a leader. Creation is retried while the broker still
// finishes the deletion (TopicAlreadyExists).
func recreateTopics(ctx context.Context, adm *kadm.Client, topics []TopicReset) error {
	for _, t := range topics {
		err := retry(ctx, func() error {
			r, err := adm.CreateTopic(ctx, t.Partitions, t.Replicas, t.Configs, t.Name)
			if err == nil {
				err = r.Err
			}
			if err != nil {
				return fmt.Errorf("create %s: %w", t.Name, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	names := make([]string, 0, len(topics))
	for _, t := range topics {
		names = append(names, t.Name)
	}
	return retry(ctx, func() error {
		td, err := adm.ListTopics(ctx, names...)
		if err != nil {
			return err
		}
		for _, t := range topics {
			d := td[t.Name]
			if d.Err != nil || int32(len(d.Partitions)) != t.Partitions || d.ID == (kadm.TopicID{}) {
				return fmt.Errorf("%s not ready yet (%v)", t.Name, d.Err)
			}
			for _, p := range d.Partitions {
				if p.Err != nil || p.Leader < 0 {
					return fmt.Errorf("%s/%d has no leader yet", t.Name, p.Partition)
				}
			}
		}
		return nil
	})
}

// retry calls fn again for up to a minute while it fails (except with
// ErrGroupActive), returning its last error.
func retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(time.Minute)
	wait := 50 * time.Millisecond
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) || errors.Is(err, ErrGroupActive) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
