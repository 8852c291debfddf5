package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/backoff"
	"github.com/eddy-streams/eddy/internal/ratelog"
	"github.com/eddy-streams/eddy/processor/admin"
	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/state/changelog"
	"github.com/eddy-streams/eddy/topology"
)

// Clock is the source of wall-clock time (idle timeouts, future-timestamp
// checks). Tests inject their own.
type Clock interface{ Now() time.Time }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Config is what an App needs. Zero values take the documented defaults.
type Config struct {
	Spec    *topology.Spec
	Brokers []string
	// StateDir holds the Pebble state of this worker. Required.
	StateDir string
	// InstanceID enables static group membership (a stable id per worker,
	// such as a Kubernetes pod name): restarts within the session timeout
	// keep the worker's partitions. Default none. It also names the
	// worker's Kafka clients: client id eddy-<app>-<instance id>, with
	// the host name when it is empty.
	InstanceID string
	// AdvertiseURL is the console base URL (scheme://host:port) at which
	// the other workers reach this one. It is appended to the client id
	// (clientID) so that every worker's console learns it from the group's
	// description and can route a state query to the owner of a key
	// (processor/console/windows.go). Default none: queries are not routed
	// to this worker.
	AdvertiseURL string
	// SessionTimeout of the group member. Default 45s.
	SessionTimeout time.Duration
	// CacheRows bounds clean rows kept in memory per task. Default 100000.
	CacheRows  int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Clock      Clock
	// ClientOpts are extra franz-go options (tests, TLS, SASL).
	ClientOpts []kgo.Opt
	// Registry is the schema registry of Avro input and output
	// (source.format or output.format avro); required for those, unused
	// otherwise. The caller owns it (e.g. a *schema.Client).
	Registry schema.Registry
	// AlertmanagerURL, when set, is the base URL of a Prometheus
	// Alertmanager (e.g. http://alertmanager:9093) that alert transitions
	// are posted to (alertmanager.go).
	AlertmanagerURL string
	// AlertmanagerResend is how often firing alerts are re-sent to
	// Alertmanager. Default 30s.
	AlertmanagerResend time.Duration
	// AlertmanagerMaxAge: firing transitions older than this (stream time
	// against the wall clock, e.g. during a replay) are not posted.
	// Default 1h.
	AlertmanagerMaxAge time.Duration
	// Parallelism is how many goroutines process the worker's
	// aggregation tasks at once, each task on one of them at a time
	// (parallel.go). Default (0) GOMAXPROCS, the cores the Go runtime
	// uses. 1 processes every task on the processing loop's goroutine.
	// With more than one, Clock must be safe for concurrent use.
	Parallelism int
	// PurgeInterval is how often, at most, records of the repartition
	// topic that the group has committed are deleted (keeper.go).
	// Default DefaultPurgeInterval.
	PurgeInterval time.Duration
}

// App runs one pipeline as a member of the consumer group named by the
// pipeline's app id. (This file is long for one reason: Run sets up, in
// an order that matters and is explained step by step, the clients, the
// store, the lookup tables, the restorers and the group member, and tears
// them down in reverse; splitting it would scatter that order.)
type App struct {
	cfg Config
	// p is the first rollup's pipeline: it runs the stateless steps every
	// rollup shares (rollups.go) and names the shared topics.
	p       *pipeline
	rollups []*rollup   // every rollup, spec order (rollups.go)
	stages  []*aggStage // the aggregation inputs and their rollups
	log     *slog.Logger
	warn    *ratelog.Logger // repeated warnings of per-record and per-poll paths, once per warnEvery with a count
	clock   Clock
	m       *metrics
	// produced is onProduced as a func value, made once: produce passes
	// it for every record.
	produced func(*kgo.Record, error)

	cl     *kgo.Client
	sess   *kgo.GroupTransactSession // exactly_once only; cl is its client
	eos    bool
	db     *state.DB
	am     *amForwarder // nil unless alerts go to Alertmanager
	limits *topicLimits // max.message.bytes of the topics eddy writes (limits.go)
	fields *fieldWatch  // aggregate input fields missing from records (fields.go)
	lagW   *lagWatch    // lag of every owned partition (lag.go)
	// listed: end offsets runLag found records before, for the loop
	// (applyListedEnds), and the latest listing's log starts
	// (applyListedStarts).
	listed struct {
		sync.Mutex
		ends   []listedEnd
		starts []listedStart
	}

	// mu guards the processing state from here to rst (the tasks and
	// their caches, the repartition stage's positions and buffers, stalls,
	// the commit's bookkeeping, the restore set's maps) and the
	// transaction session. The processing loop holds it for one turn
	// (process a poll, punctuate, maybe commit); the group callbacks
	// (assign.go) and the final commit take it between turns.
	//
	// Held across network I/O where the state it guards must not change
	// meanwhile: the commit (produce flush, offset commit, transaction
	// end: nothing may be processed into a commit under way, and a revoke
	// commits before its partitions go) and the registry look-ups of the
	// records being processed (a record's fate is decided before the next
	// one's). Not held across restores (restore.go), the assignment's
	// offset look-ups (learnSourcePositions, startWatch.assigned) or the
	// poll itself.
	mu      sync.Mutex
	loopW   *aggWorker   // the loop's scratch: processAgg (retryStalled), punctuate, the commit
	workers []*aggWorker // one per goroutine of the parallel tasks (parallel.go)
	// tasks are the tasks of each partition of each stage, one per rollup
	// of the stage, in its order (aggStage.rollups).
	tasks      map[taskKey][]*task
	srcPos     map[state.SourcePartition]int64      // repartition stage: next source offset to commit
	pg         *partitionGroup                      // repartition stage: buffered source records
	ctlNext    map[state.SourcePartition]int64      // this poll's partitions that ended with a transaction marker: their position (control.go)
	heldUntil  time.Time                            // testHooks.holdFetch
	polls      uint64                               // polls so far (applyListedStarts)
	belowStart map[state.SourcePartition]belowStart // partitions seen positioned below their log start (logstart.go)
	stalled    map[state.SourcePartition]*stall     // records waiting for the schema registry (registry_wait.go)
	eosWait    time.Time                            // exactly_once: registry outage, poll again after this
	eosBackoff backoff.Backoff                      // exactly_once: waits for the registry (registry_wait.go)
	dirtySrc   bool
	lastCommit time.Time
	rst        restoreSet  // partitions restoring (restore.go)
	sb         *standbySet // standby replicas (standby.go); safe for concurrent use
	// Watermarks (watermarks.go): every source partition (what a task
	// behind the repartition topic waits for), the repartition topic's
	// partition count, the last report sent, scratch.
	inputs   []state.SourcePartition
	aggParts int32
	wmSent   time.Time
	wmBuf    []engine.Watermark
	wmLast   []engine.Watermark // the last report sent

	prodMu  sync.Mutex
	prodErr error

	offRetry offsetRetry // offsets of failed asynchronous commits (commit.go)

	hooks testHooks // process-level tests only (testhooks.go); owned by the commit
	// aggProbe, when set (by this package's tests only), is called by
	// the goroutine that takes a task's job, before its records
	// (parallel.go).
	aggProbe func(partition int32)

	// How eddy keeps its topics (keeper.go, topiccheck.go).
	km     *keeperMetrics
	purges []*purger       // one per repartition topic, from Run
	watch  *startWatch     // log-start watch
	guard  *retentionGuard // nil until Run

	ready   atomic.Bool
	waiting atomic.Pointer[string] // why results wait on an input partition, "" none (watermarks.go)
	closing atomic.Bool
	fatal   chan error
}

// New validates cfg and prepares an App; Run starts it.
func New(cfg Config) (*App, error) {
	if cfg.Spec == nil {
		return nil, errors.New("processor: Config.Spec is required")
	}
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("processor: Config.Brokers is required (e.g. --brokers 127.0.0.1:9092)")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("processor: Config.StateDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 45 * time.Second
	}
	if cfg.AlertmanagerResend <= 0 {
		cfg.AlertmanagerResend = 30 * time.Second
	}
	if cfg.AlertmanagerMaxAge <= 0 {
		cfg.AlertmanagerMaxAge = time.Hour
	}
	hooks := loadTestHooks()
	if hooks.purgeInterval > 0 {
		cfg.PurgeInterval = hooks.purgeInterval
	}
	if cfg.PurgeInterval <= 0 {
		cfg.PurgeInterval = DefaultPurgeInterval
	}
	rollups, stages, err := buildRollups(cfg.Spec)
	if err != nil {
		return nil, err
	}
	p := rollups[0].p
	app := &App{
		cfg:        cfg,
		p:          p,
		rollups:    rollups,
		stages:     stages,
		log:        cfg.Logger.With("app", cfg.Spec.App),
		warn:       ratelog.New(cfg.Logger.With("app", cfg.Spec.App), warnEvery, cfg.Clock.Now),
		clock:      cfg.Clock,
		m:          newMetrics(cfg.Registerer),
		tasks:      make(map[taskKey][]*task),
		srcPos:     make(map[state.SourcePartition]int64),
		stalled:    make(map[state.SourcePartition]*stall),
		pg:         newPartitionGroup(time.Second),
		ctlNext:    make(map[state.SourcePartition]int64),
		belowStart: make(map[state.SourcePartition]belowStart),
		fatal:      make(chan error, 1),
		eosBackoff: backoff.Backoff{Min: registryRetryMin, Max: registryRetryMax},
		rst:        newRestoreSet(),
		sb:         newStandbySet(),
		hooks:      hooks,
		eos:        cfg.Spec.Processing == topology.ExactlyOnce,
		km:         newKeeperMetrics(cfg.Registerer),
	}
	app.fields = newFieldWatch(cfg.Spec, app.m, cfg.Clock.Now())
	app.produced = app.onProduced
	par, why := parallelism(cfg.Spec, cfg.Parallelism)
	if why != "" {
		app.log.Info("parallel tasks off", "parallelism", par, "why", why)
	}
	app.loopW, app.workers = newAggWorkers(rollups, par)
	app.lagW = newLagWatch(app.m)
	app.watch = newStartWatch(cfg.Spec.GroupID(), app.log, app.km, cfg.Clock.Now)
	if cfg.AlertmanagerURL != "" && app.hasAlerts() {
		app.am = newAMForwarder(cfg.AlertmanagerURL, cfg.Spec.App, app.log, app.m, cfg.AlertmanagerResend, cfg.AlertmanagerMaxAge)
	}
	return app, nil
}

// Ready reports whether every owned partition is restored and processing,
// and no records expired unread since the last acknowledgement (keeper.go).
func (a *App) Ready() bool { return a.ready.Load() && a.watch.notReady() == "" }

// Handler serves /healthz, /readyz and, when gatherer is non-nil, /metrics.
func (a *App) Handler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready: restoring state or not yet in the group", http.StatusServiceUnavailable)
			return
		}
		if why := a.watch.notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		// Ready even while results wait on a stalled input partition (a
		// restart would not help), but the body says so.
		if why := a.Waiting(); why != "" {
			fmt.Fprintln(w, "ready; "+why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/expired/ack", a.watch.handleExpiredAck)
	if gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

func (a *App) isAggInput(topic string) bool { return a.stageOf(topic) != nil }

// hasAlerts reports whether any rollup has alert rules.
func (a *App) hasAlerts() bool {
	for _, r := range a.rollups {
		if r.p.eng.HasAlerts() {
			return true
		}
	}
	return false
}

// Run joins the group and processes until ctx is canceled (soft shutdown:
// stop fetching, flush, commit, leave the group) or a fatal error occurs.
func (a *App) Run(ctx context.Context) (err error) {
	spec := a.cfg.Spec // the whole pipeline (a.p.spec is its first rollup's)
	// The state directory is ours before anything else happens: a second
	// process on it stops here, having touched nothing (state/lock.go).
	lock, err := state.LockDir(filepath.Join(a.cfg.StateDir, spec.App))
	if err != nil {
		return err
	}
	defer lock.Unlock()
	for _, r := range a.rollups {
		if err := r.p.bindSchemas(ctx, a.cfg.Registry, a.log, a.m); err != nil {
			return err
		}
	}
	// Every client of this pipeline (admin, restorers, the group member)
	// shows in broker tools and quotas as the app and the instance.
	base := append([]kgo.Opt{kgo.SeedBrokers(a.cfg.Brokers...), kgo.ClientID(clientID(spec.App, a.cfg.InstanceID, os.Hostname) + AdvertiseSuffix(a.cfg.AdvertiseURL))},
		a.cfg.ClientOpts...)

	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("connect to %v: %w", a.cfg.Brokers, err)
	}
	parts, _, err := admin.EnsureTopics(ctx, kadm.NewClient(admCl), spec)
	if err == nil {
		var lerr error
		a.limits, lerr = describeLimits(ctx, kadm.NewClient(admCl), a.writtenTopics())
		if lerr != nil {
			a.log.Warn("could not read max.message.bytes of every topic eddy writes; records over 1000012 bytes to those go to the dead-letter topic",
				"err", lerr)
		}
		a.log.Info("record size limits", "max_message_bytes", a.limits.byTopic)
	}
	if err == nil && spec.NeedsRepartition() {
		a.inputs, err = listInputs(ctx, kadm.NewClient(admCl), spec.Source.Topics)
	}
	a.aggParts = parts
	admCl.Close()
	if err != nil {
		return err
	}
	a.log.Info("topics ready", "partitions", parts, "changelogs", a.changelogTopics(), "parallelism", len(a.workers))
	if ttl := reportTTL(a.p.spec); a.p.spec.NeedsRepartition() && ttl >= a.p.spec.IdleTimeout {
		a.log.Warn("idle_timeout is too short to tell a dead worker's partitions from idle ones: their records may be late after a failover",
			"idle_timeout", a.p.spec.IdleTimeout, "reports_expire_after", ttl, "commit_interval", a.p.spec.CommitInterval)
	}
	stopKeeping, err := a.startKeeping(ctx, base)
	if err != nil {
		return err
	}
	// Registered before the client's shutdown below, so it runs after the
	// final commit: the last purge covers it.
	defer stopKeeping()

	db, err := openState(a.log, lock.Dir())
	if err != nil {
		return err
	}
	a.db = db
	defer db.Close()
	stopTables, err := a.p.bindTables(ctx, base, lock.Dir(), a.log) // lookup tables, loaded before processing (lookup.go)
	if err != nil {
		return err
	}
	defer stopTables()

	// Restores overlap one partition's fetches with another's writes (and
	// use more cores where there are any); each restorer reads with its own
	// client, which connects only when used. A restore job takes one from
	// the pool for its partition (restore.go).
	fetchBytes := int32(restoreFetchBytes)
	if a.hooks.restoreFetchBytes > 0 {
		fetchBytes = a.hooks.restoreFetchBytes
	}
	a.rst.pool = make(chan *changelog.Restorer, restoreParallelism)
	for range restoreParallelism {
		rcl, err := kgo.NewClient(append(base, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
			kgo.FetchMaxPartitionBytes(fetchBytes))...)
		if err != nil {
			return err
		}
		defer rcl.Close()
		a.rst.pool <- changelog.NewRestorer(rcl)
	}
	// Every restore job ends before the restorers' clients and the store
	// close (deferred after them, so run before them), and after the group
	// client closed (deferred before it).
	var cancelRestores context.CancelFunc
	a.rst.ctx, cancelRestores = context.WithCancel(context.Background())
	defer a.stopRestores(cancelRestores)

	topics := append([]string(nil), spec.Source.Topics...)
	for _, s := range a.stages {
		if s.repart {
			topics = append(topics, s.topic())
		}
	}
	opts := append(base,
		kgo.ConsumerGroup(spec.GroupID()),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // control.go: taken out of each poll by dropControl
		kgo.FetchMaxPartitionBytes(a.fetchPartitionBytes()),
		kgo.SessionTimeout(a.cfg.SessionTimeout),
		kgo.ProducerLinger(5*time.Millisecond),
		// One batch limit per topic, its max.message.bytes (limits.go).
		kgo.ProducerBatchMaxBytesFn(a.limits.limit),
		kgo.RecordPartitioner(newPartitioner(a.changelogTopics()...).withWatermarks(a.repartitionTopics()...)),
		kgo.OnPartitionsAssigned(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			a.lagW.assigned(m)
			a.onAssigned(ctx, cl, m)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			a.onRevoked(ctx, cl, m)
			a.dropStalls(m)
			a.lagW.revoked(m)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			a.onLost(ctx, cl, m)
			a.dropStalls(m)
			a.lagW.revoked(m)
		}),
	)
	if a.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(a.cfg.InstanceID))
	}
	if spec.StandbyReplicas > 0 {
		// Cooperative-sticky, preferring warm copies, and a survivor that
		// learns of a dead member's expiry sooner (standby_balance.go).
		opts = append(opts, kgo.Balancers(warmBalancer{kgo.CooperativeStickyBalancer(), a}),
			kgo.HeartbeatInterval(standbyHeartbeat(a.cfg.SessionTimeout)))
	}
	if a.hooks.rebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(a.hooks.rebalanceTimeout))
	}
	if a.eos {
		// The transactional id is stable across restarts of this worker
		// (its instance id, else the id kept in its state directory), so
		// that a restart fences the transaction its previous incarnation
		// left open when it died (fenceZombie). With a new id at every
		// start, that transaction stays open until the broker times it out
		// (the transaction timeout plus up to
		// transaction.abort.timed.out.transaction.cleanup.interval.ms,
		// 10s by default): until then read_committed consumers cannot read
		// past it, and the partitions it wrote to (repartition, changelog,
		// outputs) stand still.
		id := a.cfg.InstanceID
		if id == "" {
			var perr error
			if id, perr = db.ProcessID(); perr != nil {
				// Not a reason to stop: only the fencing of a previous
				// incarnation is lost.
				a.log.Warn("no stable transactional id from the state directory; using a new one", "err", perr)
				id = randomID()
			}
		}
		opts = append(opts,
			kgo.TransactionalID(spec.App+"-"+id),
			// Shorter than the session timeout, so that the broker starts
			// to abort a stalled worker's open transaction before the group
			// hands its partitions to another worker (the abort itself
			// comes at the broker's next check for timed-out
			// transactions).
			kgo.TransactionTimeout(max(time.Second, a.cfg.SessionTimeout*2/3)),
		)
		a.sess, err = kgo.NewGroupTransactSession(opts...)
		if err != nil {
			return err
		}
		a.cl = a.sess.Client()
		a.fenceZombie(ctx)
		// Source records buffered for event-time order stay buffered across
		// transactions: each commits, per source partition, the offset of
		// the first record not yet forwarded (commitTxnLocked, holdBack).
		if err := a.sess.Begin(); err != nil {
			a.sess.Close()
			return fmt.Errorf("begin transaction: %w", err)
		}
	} else {
		a.cl, err = kgo.NewClient(opts...)
		if err != nil {
			return err
		}
	}
	defer func() {
		a.closing.Store(true)
		a.ready.Store(false)
		a.m.ready.Set(0)
		// Soft phase: final commit while we still own the partitions.
		// Block rebalances first, as the poll loop does: a poll with a
		// canceled context returns at once, after any rebalance under way
		// has finished, and blocks the next one until AllowRebalance. A
		// revoke running during the commit would deadlock it: franz-go
		// calls the revoke callback (which takes a.mu) holding the
		// transaction session's lock, which End needs.
		done, cancelDone := context.WithCancel(context.Background())
		cancelDone()
		a.cl.PollRecords(done, 1)
		a.mu.Lock()
		if err == nil || errors.Is(err, context.Canceled) {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if cerr := a.commitLocked(cctx); cerr != nil {
				a.log.Error("final commit failed", "err", cerr)
				err = cerr
			} else {
				err = nil
			}
			cancel()
		}
		a.tasks = map[taskKey][]*task{}
		a.mu.Unlock()
		a.cl.AllowRebalance()
		if a.sess != nil {
			a.sess.Close()
		} else {
			a.cl.Close() // leaves the group; revoke callback sees no tasks
		}
		if err == nil {
			a.log.Info("shut down cleanly: committed, left the group", "group", spec.GroupID())
		} else {
			a.log.Error("stopped on an error; the next owner of its partitions redoes uncommitted work", "err", err)
		}
	}()

	lagCtx, lagCancel := context.WithCancel(context.Background())
	lagDone := make(chan struct{})
	go func() { defer close(lagDone); a.runLag(lagCtx) }()
	defer func() { lagCancel(); <-lagDone }()
	if a.am != nil {
		amCtx, amCancel := context.WithCancel(context.Background())
		amDone := make(chan struct{})
		go func() { defer close(amDone); a.am.run(amCtx) }()
		defer func() { amCancel(); <-amDone }()
	}
	if spec.StandbyReplicas > 0 {
		stopStandby, err := a.startStandby(base, fetchBytes)
		if err != nil {
			return err
		}
		defer stopStandby() // before the group client and the store close
	}
	a.mu.Lock()
	a.lastCommit = a.clock.Now()
	a.mu.Unlock()
	// Ready only once the group has assigned partitions and their state is
	// restored: onAssigned, or installRestoredLocked for the last restored
	// partition, sets it.
	for {
		select {
		case <-ctx.Done():
			return nil
		case ferr := <-a.fatal:
			return ferr
		default:
		}
		if a.eos && a.waitRegistryEOS(ctx) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fs := a.cl.PollRecords(pctx, a.pollRecords())
		cancel()
		if fs.IsClientClosed() {
			return nil
		}
		a.watch.fetched(fs)
		full := fs.NumRecords() >= a.pollRecords()
		var ferr error
		fs.EachError(func(t string, p int32, e error) {
			if errors.Is(e, context.DeadlineExceeded) || errors.Is(e, context.Canceled) {
				return
			}
			a.warn.Warn("fetch error", "topic", t, "partition", p, "err", e)
			var dl *kgo.ErrDataLoss
			if errors.As(e, &dl) {
				return
			}
			ferr = e
		})
		_ = ferr // franz-go retries fetch errors itself; they are logged above.
		a.mu.Lock()
		a.polls++
		a.dropControl(fs)
		a.applyListedEnds()
		a.applyListedStarts()
		a.pg.polled(full)
		perr := a.installRestoredLocked()
		if perr == nil {
			perr = a.retryStalled(ctx)
		}
		if perr == nil {
			perr = a.processFetches(ctx, fs)
		}
		if a.eos && isUndecided(perr) {
			perr = a.abortForRegistry(ctx, perr)
		} else if a.eos && perr == nil && !fs.Empty() {
			a.registryAnsweredEOS()
		}
		if perr == nil {
			perr = a.punctuate()
		}
		if perr == nil && a.clock.Now().Sub(a.lastCommit) >= a.p.spec.CommitInterval {
			start := time.Now()
			perr = a.commitLockedAs(ctx, true)
			a.m.commitSeconds.Observe(time.Since(start).Seconds())
		}
		a.mu.Unlock()
		a.cl.AllowRebalance()
		if perr != nil {
			if ctx.Err() != nil {
				return nil
			}
			return perr
		}
	}
}

// writtenTopics are the topics eddy produces to.
func (a *App) writtenTopics() []string {
	var ts []string
	for _, t := range a.cfg.Spec.Topics(0) {
		ts = append(ts, t.Name)
	}
	return ts
}

// changelogTopics are the rollups' changelog topics, in spec order.
func (a *App) changelogTopics() []string {
	ts := make([]string, len(a.rollups))
	for i, r := range a.rollups {
		ts[i] = r.p.spec.ChangelogTopic()
	}
	return ts
}

// repartitionTopics are the stages' repartition topics.
func (a *App) repartitionTopics() []string {
	var ts []string
	for _, s := range a.stages {
		if s.repart {
			ts = append(ts, s.topic())
		}
	}
	return ts
}

// warnEvery is how often a repeated warning is written (with the count of
// the ones left out).
const warnEvery = 10 * time.Second

// maxPollRecords bounds the records one poll hands to the processing loop.
const maxPollRecords = 5000

func (a *App) setProduceErr(err error) {
	a.prodMu.Lock()
	if a.prodErr == nil {
		a.prodErr = err
	}
	a.prodMu.Unlock()
}

func (a *App) produceErr() error {
	a.prodMu.Lock()
	defer a.prodMu.Unlock()
	return a.prodErr
}

// produce sends rec asynchronously; the next commit waits for it and fails
// if it failed.
//
// It takes no context: a record produced while the worker shuts down
// (SIGTERM cancels the run context) must still be sent, or fail the
// commit; a produce failed by cancellation would otherwise be missing from
// a transaction that commits the offsets of its input.
func (a *App) produce(rec *kgo.Record) {
	a.guard.written(rec)
	a.cl.Produce(context.Background(), rec, a.produced)
}

// onProduced is the promise of every record produce sends.
func (a *App) onProduced(r *kgo.Record, err error) {
	if err != nil {
		a.setProduceErr(a.explainProduceErr(r, err))
		return
	}
	a.countOut(r)
}

const timeLayout = engine.TimeLayout

// result is one window result the engine asks to write.
type result = engine.Result

func fmtTime(ms int64) string { return engine.FormatTime(ms) }

func fmtWindow(wk state.WindowKey) string {
	return "[" + fmtTime(wk.Start) + ", " + fmtTime(wk.End) + ")"
}
