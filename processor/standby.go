package processor

// Standby replicas (issue 17, spec standby_replicas).
//
// A standby is a warm copy of a task's state on a worker that does not own
// the task: the same Pebble TaskStore a restore writes, kept close to the
// end of the task's changelogs by the same code a restore runs
// (changelog.Restorer, which applies whole flushes at their commit markers,
// with their checkpoints, and reads under read_committed). When the
// partition then moves to this worker (its owner died or left), the normal
// restore job (restore.go) finds Pebble nearly current and restores only
// the records the standby had not read yet.
//
// Which partitions a worker keeps warm (standbyChoice): the group's
// members, sorted by instance id (static membership) or member id, form a
// ring; the aggregation partitions each member owns are kept warm by the
// next standby_replicas members after it. A worker never stands by for its
// own partitions, and with fewer members than standby_replicas+1 each
// partition has as many standbys as there are other members. The standby
// manager (standbySet, runStandby: a goroutine of the App, with up to
// standbyParallelism restorer clients) learns the assignment from the
// group's description every standbyDescribeEvery and after every
// rebalance of this worker, and catches every standby partition up every
// standbyInterval, up to standbyParallelism partitions at once (under
// exactly-once a catch-up waits for the owner's open transaction, up to a
// commit interval).
//
// Hand-over invariant: one writer at a time per store.
//   - A partition assigned to this worker is claimed (standbySet.claim, in
//     the assignment callback) before its restore job starts; the claim
//     cancels a catch-up of that partition under way and gives the job a
//     channel closed when that catch-up has ended (restoreJob.standby);
//     the job waits for it before it writes the store. A claimed partition
//     is never caught up by the standby.
//   - A revoked or lost partition is released (standbySet.release) with
//     the done channel of its last restore job: the standby does not write
//     its store before that job has ended. The task itself no longer
//     writes the store once the revoke callback has dropped it (a.mu).
//
// The balancer is franz-go's cooperative-sticky one, with its plan for
// orphaned partitions permuted so that they go to the workers holding
// their copies where the sticky plan's counts allow (standby_balance.go).

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/state/changelog"
)

// How often the standby manager catches its partitions up, and how often
// it describes the group (also after each rebalance of this worker).
const (
	standbyInterval      = time.Second
	standbyDescribeEvery = 5 * time.Second
)

// assignedHere is why a standby stops when its partition is assigned to
// this worker.
const assignedHere = "assigned to this worker: its restore takes over the warm state"

// closedChan is a closed channel: nothing to wait for.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// standbySet is the standby state of an App. Its methods are safe for
// concurrent use: the group callbacks claim and release partitions, the
// standby goroutine begins and ends catch-ups.
type standbySet struct {
	mu    sync.Mutex
	owned map[taskKey]bool            // assigned to this worker: never caught up by the standby
	after map[taskKey]<-chan struct{} // released partitions: the last restore job's done
	cur   map[taskKey]*standbyRun     // the catch-ups under way
	last  []groupMember               // the last stable membership described (standby_balance.go)
	kick  chan struct{}               // a rebalance happened: describe the group again
}

// setLast records the last stable membership described.
func (s *standbySet) setLast(ms []groupMember) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = ms
}

// lastMembers is the last stable membership described, nil before any.
func (s *standbySet) lastMembers() []groupMember {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// standbyRun is one catch-up of one partition.
type standbyRun struct {
	k      taskKey
	cancel context.CancelFunc
	done   chan struct{}
}

func newStandbySet() *standbySet {
	return &standbySet{
		owned: make(map[taskKey]bool),
		after: make(map[taskKey]<-chan struct{}),
		cur:   make(map[taskKey]*standbyRun),
		kick:  make(chan struct{}, 1),
	}
}

// claim marks k as owned by this worker and returns a channel closed once
// no catch-up writes its store: a catch-up under way is canceled.
func (s *standbySet) claim(k taskKey) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.owned[k] = true
	delete(s.after, k)
	if r := s.cur[k]; r != nil {
		r.cancel()
		return r.done
	}
	return closedChan
}

// release marks k as no longer owned; the standby may write its store once
// jobDone (the partition's last restore job's done, nil for none) is
// closed.
func (s *standbySet) release(k taskKey, jobDone <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.owned, k)
	if jobDone != nil {
		s.after[k] = jobDone
	}
}

// isOwned reports whether k is claimed.
func (s *standbySet) isOwned(k taskKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owned[k]
}

// begin starts a catch-up of k: ok is false when k is owned or its last
// restore job has not ended. The catch-up writes k's store with ctx (canceled by a
// claim) and calls end when it has stopped writing.
func (s *standbySet) begin(parent context.Context, k taskKey) (ctx context.Context, end func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owned[k] || s.cur[k] != nil {
		return nil, nil, false
	}
	if d, wait := s.after[k]; wait {
		select {
		case <-d:
			delete(s.after, k)
		default:
			return nil, nil, false
		}
	}
	ctx, cancel := context.WithCancel(parent)
	r := &standbyRun{k: k, cancel: cancel, done: make(chan struct{})}
	s.cur[k] = r
	return ctx, func() {
		s.mu.Lock()
		delete(s.cur, k)
		s.mu.Unlock()
		cancel()
		close(r.done)
	}, true
}

// poke asks the standby goroutine to describe the group again.
func (s *standbySet) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// groupMember is a member of the group and the aggregation partitions it
// owns, for standbyChoice.
type groupMember struct {
	id    string // instance id, else member id
	parts []taskKey
}

// standbyChoice returns the partitions that member self keeps warm with n
// standby replicas: the partitions of every member that self follows
// within n places in the ring of members sorted by id, sorted and without
// self's own. None when self is not a member or n is 0.
func standbyChoice(members []groupMember, self string, n int) []taskKey {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(x, y groupMember) int { return strings.Compare(x.id, y.id) })
	var mine []taskKey
	for _, m := range ms {
		if m.id == self {
			mine = m.parts
		}
	}
	var out []taskKey
	for i, m := range ms {
		if m.id == self {
			continue
		}
		for j := 1; j <= n && j < len(ms); j++ {
			if ms[(i+j)%len(ms)].id == self {
				out = append(out, m.parts...)
				break
			}
		}
	}
	out = slices.DeleteFunc(out, func(k taskKey) bool { return slices.Contains(mine, k) })
	slices.SortFunc(out, compareTaskKeys)
	return slices.Compact(out)
}

// groupMembers describes the group: its members, by instance id or
// member id, with their aggregation partitions, and this worker's id
// (memberID, or its instance id). ok is false when the group could not be
// described or is rebalancing.
func (a *App) groupMembers(ctx context.Context, adm *kadm.Client, memberID string) (ms []groupMember, self string, ok bool) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	groups, err := adm.DescribeGroups(dctx, a.cfg.Spec.GroupID())
	if err == nil {
		err = groups.Error()
	}
	if err != nil {
		if ctx.Err() == nil {
			a.warn.Warn("standby: could not describe the group", "err", err)
		}
		return nil, "", false
	}
	g, found := groups[a.cfg.Spec.GroupID()]
	if !found || g.State != "Stable" {
		return nil, "", false
	}
	for _, m := range g.Members {
		id := m.MemberID
		if m.InstanceID != nil && *m.InstanceID != "" {
			id = *m.InstanceID
		}
		if m.MemberID == memberID {
			self = id
		}
		gm := groupMember{id: id}
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range ca.Topics {
				st := a.stageOf(t.Topic)
				if st == nil {
					continue
				}
				for _, p := range t.Partitions {
					gm.parts = append(gm.parts, taskKey{st.idx, p})
				}
			}
		}
		slices.SortFunc(gm.parts, compareTaskKeys)
		gm.parts = slices.Compact(gm.parts)
		ms = append(ms, gm)
	}
	return ms, self, self != ""
}

// runStandby is the standby goroutine: it keeps the chosen partitions'
// stores close to their changelogs until ctx ends, catching up as many
// partitions at once as pool has restorers. memberID returns this
// worker's member id in the group ("" before it has joined).
func (a *App) runStandby(ctx context.Context, pool chan *changelog.Restorer, adm *kadm.Client, memberID func() string) {
	n := a.cfg.Spec.StandbyReplicas
	var (
		want      []taskKey // the partitions chosen, last time the group was described
		described time.Time
		warm      = make(map[taskKey]bool) // caught up at least once since chosen
	)
	stop := func(k taskKey, why string) {
		if !warm[k] {
			return
		}
		delete(warm, k)
		for _, ro := range a.stages[k.stage].rollups {
			a.m.standbyLag.DeleteLabelValues(ro.p.spec.Store, strconv.Itoa(int(k.p)))
		}
		a.log.Info("standby stopped", "partition", k.p, "topic", a.stages[k.stage].topics[0], "why", why)
	}
	defer func() {
		for _, k := range want {
			if !a.sb.isOwned(k) {
				stop(k, "shutting down")
			}
		}
		a.m.standbyParts.Set(0)
	}()
	tick := time.NewTicker(standbyInterval)
	defer tick.Stop()
	for {
		if id := memberID(); id != "" && time.Since(described) >= standbyDescribeEvery {
			if ms, self, ok := a.groupMembers(ctx, adm, id); ok {
				described = time.Now()
				a.sb.setLast(ms)
				next := standbyChoice(ms, self, n)
				for _, k := range want {
					switch {
					case slices.Contains(next, k):
					case a.sb.isOwned(k):
						stop(k, assignedHere)
					default:
						stop(k, "no longer chosen: the group's assignment changed")
					}
				}
				want = next
			}
		}
		var todo []taskKey
		for _, k := range want {
			if a.sb.isOwned(k) {
				stop(k, assignedHere)
				continue
			}
			todo = append(todo, k)
		}
		type result struct {
			began bool
			err   error
		}
		results := make([]result, len(todo))
		var wg sync.WaitGroup
		for i, k := range todo {
			r := <-pool // every catch-up ends soon once ctx ends
			first := !warm[k]
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i].began, results[i].err = a.catchUp(ctx, r, adm, k, first)
				pool <- r
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		for i, k := range todo {
			switch err := results[i].err; {
			case err != nil && !errors.Is(err, context.Canceled):
				a.warn.Warn("standby: could not catch up", "partition", k.p, "topic", a.stages[k.stage].topics[0], "err", err)
			case err == nil && results[i].began:
				warm[k] = true
			}
		}
		a.m.standbyParts.Set(float64(len(todo)))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.sb.kick:
			described = time.Time{}
		}
	}
}

// catchUp brings the stores of partition k of every rollup of its stage up
// to their changelogs, unless k is claimed meanwhile (then it returns
// context.Canceled as soon as it has stopped writing). first logs the
// start of the standby and what it read. began is false when it did not
// start: k is owned, or its last restore job is still ending.
func (a *App) catchUp(ctx context.Context, r *changelog.Restorer, adm *kadm.Client, k taskKey, first bool) (began bool, err error) {
	cctx, end, ok := a.sb.begin(ctx, k)
	if !ok {
		return false, nil
	}
	defer end()
	st := a.stages[k.stage]
	label := strconv.Itoa(int(k.p))
	topics := a.changelogTopics()
	ends, err := adm.ListEndOffsets(cctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return true, err
	}
	var records, lag int64
	fromScratch := false
	for _, ro := range st.rollups {
		spec := ro.p.spec
		ts := a.db.TaskStore(spec.Store, k.p, ro.p.aggSpecs, 1)
		// Lag before this catch-up: what a failover now would restore.
		if e, ok := ends.Lookup(spec.ChangelogTopic(), k.p); ok {
			behind := e.Offset
			if cp, ok, _ := ts.Checkpoint(); ok {
				behind = max(0, e.Offset-cp.ChangelogNext)
			}
			a.m.standbyLag.WithLabelValues(spec.Store, label).Set(float64(behind))
			lag += behind
		}
		res, err := r.Restore(cctx, spec.ChangelogTopic(), k.p, ts)
		ts.DropCache()
		records += res.Records
		fromScratch = fromScratch || res.FromScratch
		if err != nil {
			return true, err
		}
		a.m.standbyRecords.Add(float64(res.Records))
	}
	if first {
		a.log.Info("standby started: keeping a warm copy of a partition this worker does not own", "partition", k.p, "topic", st.topics[0],
			"caught_up_records", records, "from_scratch", fromScratch, "lag_before", lag)
	}
	return true, nil
}

// startStandby starts the standby goroutine with its own read_committed
// restorer clients, up to standbyParallelism (base: the App's client
// options; a client connects only when used). stop ends it and closes the
// clients; Run calls it before the group client and the store close.
func (a *App) startStandby(base []kgo.Opt, fetchBytes int32) (stop func(), err error) {
	pool := make(chan *changelog.Restorer, standbyParallelism)
	var cls []*kgo.Client
	closeAll := func() {
		for _, cl := range cls {
			cl.Close()
		}
	}
	for range standbyParallelism {
		rcl, err := kgo.NewClient(append(slices.Clone(base), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
			kgo.FetchMaxPartitionBytes(fetchBytes))...)
		if err != nil {
			closeAll()
			return nil, err
		}
		cls = append(cls, rcl)
		pool <- changelog.NewRestorer(rcl)
	}
	a.log.Info("standby replicas on", "standby_replicas", a.cfg.Spec.StandbyReplicas)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	cl := a.cl
	go func() {
		defer close(done)
		a.runStandby(ctx, pool, kadm.NewClient(cls[0]), func() string {
			id, _ := cl.GroupMetadata()
			return id
		})
	}()
	return func() {
		cancel()
		<-done
		closeAll()
	}, nil
}

// standbyParallelism is how many standby partitions catch up at once.
const standbyParallelism = 4
