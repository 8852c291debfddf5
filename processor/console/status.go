package console

import (
	"context"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/topology"
)

// The pipeline picture (GET /api/v1/status, and the live stream
// GET /api/v1/status/live): the group as Kafka knows it (members and
// their partitions, committed offsets and lag, from any worker: the group
// coordinator is the shared source, no central server), and this worker's
// own view from its metrics (Config.Gatherer): rates of each edge, stream
// time against the wall clock and open windows of the partitions it owns,
// restore progress, commits.
//
// Rates are differences of the worker's counters between two snapshots of
// one live stream (every statusEvery); a one-shot GET has totals only.
// They are this worker's rates: other workers' show on their consoles.

const statusEvery = 2 * time.Second

// StatusJSON is the answer of GET /api/v1/status.
type StatusJSON struct {
	TimeMs int64 `json:"time_ms"`
	// Group is the consumer group (the pipeline's app id) as its
	// coordinator describes it.
	Group GroupJSON `json:"group"`
	// Partitions of the aggregation's input (the repartition topic, or
	// the source topics when keyed by the group key) and, with a
	// repartition stage, of the source topics.
	Partitions []PartitionJSON `json:"partitions"`
	// Edges of the picture, in flow order, with this worker's counts.
	Edges []EdgeJSON `json:"edges"`
	// Local is this worker's own state.
	Local LocalJSON `json:"local"`
	// RollupOpenWindows is, in a pipeline with several rollups, each
	// rollup's windows open in this worker's tasks, by rollup name.
	RollupOpenWindows map[string]int64 `json:"rollup_open_windows,omitempty"`
	// Error is set when the group could not be described (the rest is
	// still this worker's view).
	Error string `json:"error,omitempty"`
}

// GroupJSON is the consumer group.
type GroupJSON struct {
	ID      string       `json:"id"`
	State   string       `json:"state"`
	Members []MemberJSON `json:"members"`
}

// MemberJSON is one worker of the group.
type MemberJSON struct {
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
	InstanceID string `json:"instance_id,omitempty"`
	MemberID   string `json:"member_id"`
	Partitions int    `json:"partitions"`
}

// ownerName names a member for the partition table: its client id (which
// holds the pod's name or --instance-id), host, and the end of its member
// id, which tells apart two workers on one host.
func ownerName(m MemberJSON) string {
	id := m.MemberID
	if len(id) > 6 {
		id = id[len(id)-6:]
	}
	return m.ClientID + " (" + m.Host + ", member …" + id + ")"
}

// PartitionJSON is one partition the group reads.
type PartitionJSON struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Owner names the member that owns it (ownerName); "" when
	// unassigned (rebalancing, or no worker running).
	Owner     string `json:"owner"`
	Committed int64  `json:"committed"` // -1: nothing committed yet
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	// StreamTimeMs is the task's stream time, when this worker owns the
	// aggregation partition and it has seen a record; BehindMs is the wall
	// clock minus it.
	StreamTimeMs *int64 `json:"stream_time_ms,omitempty"`
	BehindMs     *int64 `json:"behind_ms,omitempty"`
	OpenWindows  *int64 `json:"open_windows,omitempty"`
	// Restore progress of the partition's state, while it restores.
	RestoreDone  *int64 `json:"restore_done,omitempty"`
	RestoreTotal *int64 `json:"restore_total,omitempty"`
}

// EdgeJSON is one arrow of the picture: records from one step to the next.
type EdgeJSON struct {
	From  string  `json:"from"`
	To    string  `json:"to"`
	Total float64 `json:"total"`
	// PerSecond over the last interval of a live stream; null on a
	// one-shot request.
	PerSecond *float64 `json:"per_second"`
}

// LocalJSON is this worker's state.
type LocalJSON struct {
	Ready   bool    `json:"ready"`
	Tasks   int64   `json:"tasks"`
	Commits float64 `json:"commits"`
	// LastCommitAgoMs: how long ago the commit count last changed, as seen
	// by this live stream; null before it has seen a change.
	LastCommitAgoMs *int64  `json:"last_commit_ago_ms,omitempty"`
	Filtered        float64 `json:"filtered"`
}

// metricsView is one gather of the worker's metrics.
type metricsView map[string]*dto.MetricFamily

func (m metricsView) sum(name string, match map[string]string) (float64, bool) {
	mf := m[name]
	if mf == nil {
		return 0, false
	}
	var s float64
	found := false
	for _, x := range mf.GetMetric() {
		ok := true
		for k, v := range match {
			if label(x, k) != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		found = true
		switch {
		case x.Counter != nil:
			s += x.Counter.GetValue()
		case x.Gauge != nil:
			s += x.Gauge.GetValue()
		}
	}
	return s, found
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func (c *Console) gather() metricsView {
	mv := metricsView{}
	if c.cfg.Gatherer == nil {
		return mv
	}
	mfs, err := c.cfg.Gatherer.Gather()
	if err != nil {
		c.log.Debug("gather metrics", "err", err)
	}
	for _, mf := range mfs {
		mv[mf.GetName()] = mf
	}
	return mv
}

// aggTopics are the topics the aggregation tasks read: of every rollup,
// each once.
func (c *Console) aggTopics() []string {
	var out []string
	for _, r := range c.rollups {
		for _, t := range aggTopicsOf(r) {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// aggTopicsOf are the topics the tasks of rollup s read.
func aggTopicsOf(s *topology.Spec) []string {
	if s.NeedsRepartition() {
		return []string{s.RepartitionTopic()}
	}
	return s.Source.Topics
}

// status builds one snapshot; prev (the previous snapshot of the same
// stream, or nil) gives rates.
func (c *Console) status(ctx context.Context, prev *StatusJSON, prevAt time.Time, lastCommit *time.Time) *StatusJSON {
	s := c.cfg.Spec
	now := c.cfg.Now()
	st := &StatusJSON{TimeMs: now.UnixMilli(), Group: GroupJSON{ID: s.GroupID(), Members: []MemberJSON{}}, Partitions: []PartitionJSON{}}
	mv := c.gather()

	// Edges, in flow order.
	edge := func(from, to string, total float64) {
		st.Edges = append(st.Edges, EdgeJSON{From: from, To: to, Total: total})
	}
	if s.MultiRollup() {
		c.rollupEdges(mv, edge)
		st.RollupOpenWindows = map[string]int64{}
		if mf := mv["eddy_open_windows"]; mf != nil {
			for _, m := range mf.GetMetric() {
				name, _, ok := strings.Cut(label(m, "partition"), "/")
				if ok && m.Gauge != nil {
					st.RollupOpenWindows[name] += int64(m.Gauge.GetValue())
				}
			}
		}
	} else {
		windows := "windows"
		for _, t := range s.Source.Topics {
			in, _ := mv.sum("eddy_records_in_total", map[string]string{"topic": t})
			if s.NeedsRepartition() {
				edge(t, s.RepartitionTopic(), in)
			} else {
				edge(t, windows, in)
			}
		}
		if s.NeedsRepartition() {
			in, _ := mv.sum("eddy_records_in_total", map[string]string{"topic": s.RepartitionTopic()})
			edge(s.RepartitionTopic(), windows, in)
		}
		out, _ := mv.sum("eddy_records_out_total", map[string]string{"topic": s.Output.Topic})
		edge(windows, s.Output.Topic, out)
		late, _ := mv.sum("eddy_late_records_total", nil)
		edge(windows, s.LateTopic, late)
		dlq, _ := mv.sum("eddy_dead_letters_total", nil)
		edge(windows, s.DeadLetterTopic, dlq)
		if s.Alerts != nil && len(s.Alerts.Rules) > 0 {
			al, _ := mv.sum("eddy_alert_transitions_total", nil)
			edge(windows, s.Alerts.Topic, al)
		}
	}
	if prev != nil && len(prev.Edges) == len(st.Edges) {
		dt := now.Sub(prevAt).Seconds()
		for i := range st.Edges {
			if dt > 0 {
				r := math.Max(0, (st.Edges[i].Total-prev.Edges[i].Total)/dt)
				st.Edges[i].PerSecond = &r
			}
		}
	}
	ready, _ := mv.sum("eddy_ready", nil)
	tasks, _ := mv.sum("eddy_tasks", nil)
	st.Local = LocalJSON{Ready: ready == 1, Tasks: int64(tasks)}
	st.Local.Commits, _ = mv.sum("eddy_commits_total", nil)
	st.Local.Filtered, _ = mv.sum("eddy_filtered_records_total", nil)
	if prev != nil && st.Local.Commits != prev.Local.Commits {
		*lastCommit = now
	}
	if lastCommit != nil && !lastCommit.IsZero() {
		ago := now.Sub(*lastCommit).Milliseconds()
		st.Local.LastCommitAgoMs = &ago
	}

	// The group, from its coordinator.
	topics := append([]string{}, c.aggTopics()...)
	if s.NeedsRepartition() {
		topics = append(topics, s.Source.Topics...)
	}
	owners := map[string]map[int32]string{}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.cfg.Brokers...), kgo.ClientID("eddy-console-" + s.App)}, c.cfg.ClientOpts...)...)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	groups, err := adm.DescribeGroups(ctx, s.GroupID())
	if err == nil {
		if g, ok := groups[s.GroupID()]; ok && g.Err == nil {
			st.Group.State = g.State
			for _, m := range g.Members {
				mj := MemberJSON{ClientID: m.ClientID, Host: strings.TrimPrefix(m.ClientHost, "/"), MemberID: m.MemberID}
				if m.InstanceID != nil {
					mj.InstanceID = *m.InstanceID
				}
				if a, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range a.Topics {
						for _, p := range t.Partitions {
							if owners[t.Topic] == nil {
								owners[t.Topic] = map[int32]string{}
							}
							owners[t.Topic][p] = ownerName(mj)
							mj.Partitions++
						}
					}
				}
				st.Group.Members = append(st.Group.Members, mj)
			}
		} else if ok && g.Err != nil {
			st.Error = g.Err.Error()
		}
	} else {
		st.Error = err.Error()
	}
	lag, err := adm.Lag(ctx, s.GroupID())
	if err != nil {
		st.Error = err.Error()
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	agg := map[string]bool{}
	for _, t := range c.aggTopics() {
		agg[t] = true
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		p := PartitionJSON{Topic: o.Topic, Partition: o.Partition, Owner: owners[o.Topic][o.Partition], Committed: -1, End: o.Offset, Lag: o.Offset}
		if gl, ok := lag[s.GroupID()]; ok {
			if ml, ok := gl.Lag.Lookup(o.Topic, o.Partition); ok && ml.Err == nil {
				if ml.Commit.At >= 0 {
					p.Committed = ml.Commit.At
					p.Lag = o.Offset - ml.Commit.At
				}
			}
		}
		if agg[o.Topic] {
			c.localPartition(mv, now, o.Topic, o.Partition, &p)
		}
		st.Partitions = append(st.Partitions, p)
	})
	sort.Slice(st.Partitions, func(i, j int) bool {
		a, b := st.Partitions[i], st.Partitions[j]
		if agg[a.Topic] != agg[b.Topic] {
			return !agg[a.Topic]
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return st
}

// RollupNode names a rollup's node in the edges of a pipeline with several
// rollups: "rollup:" and its name. RollupsNode is the node the shared late
// and dead-letter edges start from.
const (
	RollupNode  = "rollup:"
	RollupsNode = "rollups"
)

// rollupEdges are the edges of a pipeline with several rollups, in flow
// order: each source topic to each repartition topic (records read from
// the source), each repartition topic (or, keyed by the group key, each
// source topic) to each rollup that reads it (records read from it: every
// one is applied to each of its rollups), a chained rollup from the
// rollup it reads (that rollup's results written: under emit close the
// final results it merges), each rollup to its output (records written)
// and alerts topic (transitions of its rules), and the shared late and
// dead-letter topics from "rollups".
func (c *Console) rollupEdges(mv metricsView, edge func(from, to string, total float64)) {
	s := c.cfg.Spec
	var parts []string // repartition topics, each once
	for _, r := range c.rollups {
		if r.From == "" && r.NeedsRepartition() && !slices.Contains(parts, r.RepartitionTopic()) {
			parts = append(parts, r.RepartitionTopic())
		}
	}
	for _, t := range s.Source.Topics {
		in, _ := mv.sum("eddy_records_in_total", map[string]string{"topic": t})
		for _, rt := range parts {
			edge(t, rt, in)
		}
	}
	for _, r := range c.rollups {
		node := RollupNode + r.RollupName
		switch {
		case r.From != "":
			src, _ := c.rollupSpec(r.From)
			n, _ := mv.sum("eddy_records_out_total", map[string]string{"topic": src.Output.Topic})
			edge(RollupNode+r.From, node, n)
		case r.NeedsRepartition():
			in, _ := mv.sum("eddy_records_in_total", map[string]string{"topic": r.RepartitionTopic()})
			edge(r.RepartitionTopic(), node, in)
		default:
			for _, t := range s.Source.Topics {
				in, _ := mv.sum("eddy_records_in_total", map[string]string{"topic": t})
				edge(t, node, in)
			}
		}
	}
	for _, r := range c.rollups {
		node := RollupNode + r.RollupName
		out, _ := mv.sum("eddy_records_out_total", map[string]string{"topic": r.Output.Topic})
		edge(node, r.Output.Topic, out)
		if r.Alerts != nil && len(r.Alerts.Rules) > 0 {
			// Rule names are unique across rollups (topology), so the
			// metric's rule label tells the rollup.
			var al float64
			for _, rule := range r.Alerts.Rules {
				n, _ := mv.sum("eddy_alert_transitions_total", map[string]string{"rule": rule.Name})
				al += n
			}
			edge(node, r.AlertsTopic(), al)
		}
	}
	late, _ := mv.sum("eddy_late_records_total", nil)
	edge(RollupsNode, s.LateTopic, late)
	dlq, _ := mv.sum("eddy_dead_letters_total", nil)
	edge(RollupsNode, s.DeadLetterTopic, dlq)
}

// localPartition fills this worker's view of partition part of the
// aggregation input topic: stream time, open windows and restore
// progress. In a pipeline with several rollups the tasks of every rollup
// reading the topic are summed (open windows, restore) or the first one's
// taken (stream time: they read the same records); their metrics are
// labeled "ROLLUP/PARTITION", and restores by store.
func (c *Console) localPartition(mv metricsView, now time.Time, topic string, part int32, p *PartitionJSON) {
	num := strconv.Itoa(int(part))
	var open, done, total int64
	var haveOpen, haveRestore bool
	for _, r := range c.rollups {
		if !slices.Contains(aggTopicsOf(r), topic) {
			continue
		}
		label, restore := num, map[string]string{"partition": num}
		if r.RollupName != "" {
			label = r.RollupName + "/" + num
			restore["store"] = r.Store
		}
		if v, ok := mv.sum("eddy_stream_time_seconds", map[string]string{"partition": label}); ok && p.StreamTimeMs == nil {
			ms := int64(v * 1000)
			behind := now.UnixMilli() - ms
			p.StreamTimeMs, p.BehindMs = &ms, &behind
		}
		if v, ok := mv.sum("eddy_open_windows", map[string]string{"partition": label}); ok {
			open += int64(v)
			haveOpen = true
		}
		if v, ok := mv.sum("eddy_restore_records_total", restore); ok && v > 0 {
			d, _ := mv.sum("eddy_restore_records_done", restore)
			total += int64(v)
			done += int64(d)
			haveRestore = true
		}
	}
	if haveOpen {
		p.OpenWindows = &open
	}
	if haveRestore {
		p.RestoreDone, p.RestoreTotal = &done, &total
	}
}

func (c *Console) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.status(r.Context(), nil, time.Time{}, nil))
}

// handleStatusLive pushes a snapshot every statusEvery, with rates.
func (c *Console) handleStatusLive(w http.ResponseWriter, r *http.Request) {
	ctx, done, ok := c.openView(w, r)
	if !ok {
		return
	}
	defer done()
	sse := newSSE(w, c.cfg.WriteTimeout, c.cfg.Now)
	var prev *StatusJSON
	var prevAt, lastCommit time.Time
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		at := c.cfg.Now()
		st := c.status(ctx, prev, prevAt, &lastCommit)
		if ctx.Err() != nil {
			return
		}
		if err := sse.send("status", st); err != nil {
			return
		}
		prev, prevAt = st, at
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}
