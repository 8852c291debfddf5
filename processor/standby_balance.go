package processor

// The group's assignment prefers warm copies (standby replicas, issue 17).
//
// warmBalancer wraps franz-go's cooperative-sticky balancer without
// changing its protocol: the same protocol name, join metadata and
// assignment format, so workers with and without it share a group. Only
// the leader's plan changes, and only for orphaned partitions (owned by no
// member that joined: their worker died or left): the sticky balancer
// decides how the partitions are balanced, and preferWarm then moves
// orphans, within each topic, to members holding their warm copies where
// that keeps the counts as even (swapping orphans between members, or
// moving one to a member with fewer partitions of the topic). Partitions a
// member still owns are never moved (the cooperative protocol's
// invariant).
//
// Where the warm copies are comes from the ring of standbyChoice over the
// last stable membership the leader's standby manager described
// (standbySet.last): a partition last owned by member X is warm on the n
// members after X. A leader that has not described the group yet changes
// nothing.

import (
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// warmBalancer is a kgo.GroupBalancer: inner, with preferWarm on the
// leader's plan.
type warmBalancer struct {
	kgo.GroupBalancer
	a *App
}

func (b warmBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	inner, topics, err := b.GroupBalancer.MemberBalancer(members)
	if err != nil {
		return nil, nil, err
	}
	return warmMemberBalancer{inner: inner, members: members, a: b.a}, topics, nil
}

type warmMemberBalancer struct {
	inner   kgo.GroupMemberBalancer
	members []kmsg.JoinGroupResponseMember
	a       *App
}

func (b warmMemberBalancer) Balance(topics map[string]int32) kgo.IntoSyncAssignment {
	plan, err := b.BalanceOrError(topics)
	if err != nil {
		return b.inner.Balance(topics)
	}
	return plan
}

func (b warmMemberBalancer) BalanceOrError(topics map[string]int32) (kgo.IntoSyncAssignment, error) {
	var plan kgo.IntoSyncAssignment
	if be, ok := b.inner.(kgo.GroupMemberBalancerOrError); ok {
		var err error
		if plan, err = be.BalanceOrError(topics); err != nil {
			return nil, err
		}
	} else {
		plan = b.inner.Balance(topics)
	}
	last := b.a.sb.lastMembers()
	if len(last) == 0 {
		return plan, nil
	}
	out, moved := b.a.preferWarmPlan(plan.IntoSyncAssignment(), b.members, last)
	if moved > 0 {
		b.a.log.Info("assignment: orphaned partitions given to the workers holding their standby copies", "moved", moved)
	}
	return syncAssignment(out), nil
}

// syncAssignment is a ready plan.
type syncAssignment []kmsg.SyncGroupRequestGroupAssignment

func (s syncAssignment) IntoSyncAssignment() []kmsg.SyncGroupRequestGroupAssignment { return s }

// preferWarmPlan applies preferWarm to the plan of the sticky balancer
// for members (their join metadata), with the warm copies of the ring over
// last. It returns the plan unchanged when it cannot read it.
func (a *App) preferWarmPlan(plan []kmsg.SyncGroupRequestGroupAssignment, members []kmsg.JoinGroupResponseMember, last []groupMember) ([]kmsg.SyncGroupRequestGroupAssignment, int) {
	ids := make(map[string]string, len(members)) // member id -> ring id
	owned := map[string]map[int32]bool{}         // topic -> partitions some member owns
	for _, m := range members {
		id := m.MemberID
		if m.InstanceID != nil && *m.InstanceID != "" {
			id = *m.InstanceID
		}
		ids[m.MemberID] = id
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(m.ProtocolMetadata); err != nil {
			return plan, 0
		}
		for _, op := range md.OwnedPartitions {
			if owned[op.Topic] == nil {
				owned[op.Topic] = map[int32]bool{}
			}
			for _, p := range op.Partitions {
				owned[op.Topic][p] = true
			}
		}
	}
	assign := make(map[string]map[string][]int32, len(plan))
	decoded := make([]kmsg.ConsumerMemberAssignment, len(plan))
	for i, sa := range plan {
		if err := decoded[i].ReadFrom(sa.MemberAssignment); err != nil {
			return plan, 0
		}
		ts := map[string][]int32{}
		for _, t := range decoded[i].Topics {
			ts[t.Topic] = slices.Clone(t.Partitions)
		}
		assign[sa.MemberID] = ts
	}
	// The warm copies of each aggregation partition: the ring successors
	// of its last owner, by member id of this join.
	byRing := map[string]string{}
	for mid, id := range ids {
		byRing[id] = mid
	}
	n := a.cfg.Spec.StandbyReplicas
	warm := func(topic string, p int32) []string {
		st := a.stageOf(topic)
		if st == nil {
			return nil
		}
		k := taskKey{st.idx, p}
		var out []string
		for _, m := range last {
			if mid, ok := byRing[m.id]; ok && slices.Contains(standbyChoice(last, m.id, n), k) {
				out = append(out, mid)
			}
		}
		return out
	}
	moved := preferWarm(assign, func(topic string, p int32) bool { return owned[topic][p] }, warm)
	if moved == 0 {
		return plan, 0
	}
	out := make([]kmsg.SyncGroupRequestGroupAssignment, len(plan))
	for i, sa := range plan {
		ca := decoded[i]
		ca.Topics = nil
		ts := assign[sa.MemberID]
		names := make([]string, 0, len(ts))
		for t := range ts {
			names = append(names, t)
		}
		slices.Sort(names)
		for _, t := range names {
			ps := slices.Clone(ts[t])
			slices.Sort(ps)
			ca.Topics = append(ca.Topics, kmsg.ConsumerMemberAssignmentTopic{Topic: t, Partitions: ps})
		}
		out[i] = sa
		out[i].MemberAssignment = ca.AppendTo(nil)
	}
	return out, moved
}

// preferWarm moves the orphaned partitions (owned false) of each topic of
// assign (member -> topic -> partitions) towards members in
// warm(topic, p): an orphan at a member without its copy is swapped with
// an orphan of the same topic at a member with the copy, when that does
// not take the other one away from a member with its own copy; then an
// orphan still away from its copy moves to a member with the copy that
// has fewer partitions of the topic than its member (so the counts per
// topic are swapped or evened out, never made less even). Partitions
// owned stay where they are. It returns how many partitions now sit with
// a warm copy that did not before.
func preferWarm(assign map[string]map[string][]int32, owned func(topic string, p int32) bool, warm func(topic string, p int32) []string) int {
	type orphan struct {
		member string
		p      int32
	}
	byTopic := map[string][]orphan{}
	members := make([]string, 0, len(assign))
	for m := range assign {
		members = append(members, m)
	}
	slices.Sort(members) // deterministic plans
	for _, m := range members {
		for t, ps := range assign[m] {
			for _, p := range ps {
				if !owned(t, p) {
					byTopic[t] = append(byTopic[t], orphan{m, p})
				}
			}
		}
	}
	gained := 0
	for t, os := range byTopic {
		slices.SortFunc(os, func(x, y orphan) int { return int(x.p) - int(y.p) })
		at := func(o orphan, m string) bool { return slices.Contains(warm(t, o.p), m) }
		for i := range os {
			if at(os[i], os[i].member) || len(warm(t, os[i].p)) == 0 {
				continue
			}
			for j := range os {
				if i == j || os[j].member == os[i].member || !at(os[i], os[j].member) {
					continue
				}
				if at(os[j], os[j].member) && !at(os[j], os[i].member) {
					continue // would take j away from its copy
				}
				if !at(os[j], os[j].member) && at(os[j], os[i].member) {
					gained++
				}
				gained++
				os[i].member, os[j].member = os[j].member, os[i].member
				break
			}
		}
		// An orphan still away from its copies moves to a member with one
		// that has fewer partitions of the topic than its member: the
		// counts are swapped or evened out, never made less even.
		count := map[string]int{}
		for _, m := range members {
			count[m] = len(assign[m][t])
		}
		for i := range os {
			if at(os[i], os[i].member) {
				continue
			}
			for _, m := range warm(t, os[i].p) {
				if _, ok := assign[m]; ok && count[m] < count[os[i].member] {
					count[m]++
					count[os[i].member]--
					os[i].member = m
					gained++
					break
				}
			}
		}
		// Rebuild the topic's assignment from the permuted orphans.
		for _, m := range members {
			ps := assign[m][t]
			ps = slices.DeleteFunc(ps, func(p int32) bool { return !owned(t, p) })
			for _, o := range os {
				if o.member == m {
					ps = append(ps, o.p)
				}
			}
			if len(ps) > 0 || assign[m][t] != nil {
				if assign[m] == nil {
					assign[m] = map[string][]int32{}
				}
				assign[m][t] = ps
			}
		}
	}
	return gained
}

// standbyHeartbeat is the group heartbeat interval of a pipeline with
// standbys: a tenth of the session timeout, between 100ms and 1s (franz-go's
// default is 3s). A surviving member learns that the group rebalances (a
// dead member's session expired) from its next heartbeat, so with the
// default a failover waits up to 3s more than the session timeout before
// the restore of the warm copy even starts.
func standbyHeartbeat(session time.Duration) time.Duration {
	return min(max(session/10, 100*time.Millisecond), time.Second)
}
