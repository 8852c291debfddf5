package processor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are eddy's Prometheus metrics. They are registered only on the
// registerer given in Config (none when it is nil), never globally.
type metrics struct {
	recordsIn     *prometheus.CounterVec
	recordsOut    *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	alerts        *prometheus.CounterVec
	amSent        *prometheus.CounterVec
	late          prometheus.Counter
	filtered      prometheus.Counter
	duplicates    prometheus.Counter
	commitSeconds prometheus.Histogram
	commits       prometheus.Counter
	restoreDone   *prometheus.GaugeVec
	restoreTotal  *prometheus.GaugeVec
	restored      prometheus.Counter
	lag           *prometheus.GaugeVec
	streamTime    *prometheus.GaugeVec
	openWindows   *prometheus.GaugeVec
	ready         prometheus.Gauge
	tasks         prometheus.Gauge
	// tooLarge counts records that did not fit the topic eddy would
	// write them to (limits.go), by that topic.
	tooLarge *prometheus.CounterVec
	// deadLetterRefs counts reference records written in place of dead
	// letters too large for the dead-letter topic.
	deadLetterRefs prometheus.Counter
	// fieldMissing counts records without an aggregate's input field.
	fieldMissing *prometheus.CounterVec
	// registryWaiting is 1 while records wait for the schema registry.
	registryWaiting prometheus.Gauge
	// Watermarks (watermarks.go): how long each task's stream time has
	// waited on its slowest input partition, which one, and how often
	// stream time moved on without a stalled one.
	wmWait    *prometheus.GaugeVec
	wmHolder  *prometheus.GaugeVec
	wmMovedOn *prometheus.CounterVec
	wmRecords *prometheus.CounterVec
	// Standby replicas (standby.go).
	standbyParts   prometheus.Gauge
	standbyLag     *prometheus.GaugeVec
	standbyRecords prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_records_in_total", Help: "Records read, by topic."}, []string{"topic"}),
		recordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_records_out_total", Help: "Records written and acknowledged, by topic."}, []string{"topic"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_dead_letters_total", Help: "Records sent to the dead-letter topic, by error class."}, []string{"class"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_alert_transitions_total", Help: "Alert transitions published to the alerts topic, by rule and state (firing, resolved)."}, []string{"rule", "state"}),
		amSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_alertmanager_posts_total", Help: "Posts of alerts to Alertmanager, by result (ok, error)."}, []string{"result"}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_late_records_total", Help: "Records that arrived after all their windows closed (sent to the late topic)."}),
		filtered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_filtered_records_total", Help: "Records the pipeline filter rejected."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_duplicate_records_skipped_total", Help: "Re-delivered records skipped because their effect is already in state."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eddy_commit_duration_seconds", Help: "Time to flush state, commit offsets and write Pebble.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_commits_total", Help: "Completed commits."}),
		restoreDone: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_restore_records_done", Help: "Changelog records restored so far in the current restore, by partition."}, []string{"store", "partition"}),
		restoreTotal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_restore_records_total", Help: "Changelog records to restore in the current restore, by partition."}, []string{"store", "partition"}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_restored_records_total", Help: "Changelog records restored since start."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_consumer_lag_records", Help: "Records between the last processed offset and the partition end, by topic and partition, for every partition the worker owns."}, []string{"topic", "partition"}),
		streamTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_stream_time_seconds", Help: "Stream time of each task (the lowest watermark of its input partitions, or idle-advanced), Unix seconds; unset for a partition that has had no record."}, []string{"partition"}),
		openWindows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_open_windows", Help: "Windows held in state, waiting to close, by partition."}, []string{"partition"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eddy_ready", Help: "1 when every owned partition's state is restored and the worker is processing."}),
		tasks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eddy_tasks", Help: "Aggregation tasks (owned partitions) in this worker."}),
		tooLarge: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_too_large_records_total", Help: "Records larger than the max.message.bytes of the topic eddy would write them to, by that topic; each went to the dead-letter topic (class too_large), or a reference to it when it did not fit there either."}, []string{"topic"}),
		deadLetterRefs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_dead_letter_references_total", Help: "Reference records (source topic, partition and offset, no key or value) written in place of dead letters too large for the dead-letter topic."}),
		fieldMissing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_field_missing_total", Help: "Records that reached an aggregate without its input field (absent, not null), by aggregate and field: a misspelled field shows here."}, []string{"aggregate", "field"}),
		registryWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eddy_registry_waiting", Help: "1 while records wait for the schema registry (unreachable): their partitions are paused, nothing is dead-lettered or committed past them."}),
		wmWait: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_watermark_wait_seconds", Help: "Seconds since the input partition holding back each task's stream time last advanced (0 when none holds it back), by task partition."}, []string{"partition"}),
		wmHolder: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_watermark_holder", Help: "1 for the input partition (topic/N) whose watermark holds back each task's stream time, by task partition."}, []string{"partition", "input"}),
		wmMovedOn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_watermark_moved_on_total", Help: "Times stream time moved on without a stalled input partition (records waiting on it, no progress for max_wait), by input partition (topic/N)."}, []string{"input"}),
		wmRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_watermark_records_total", Help: "Watermark records of the repartition topic written (out, acknowledged) and read (in); they are not counted in eddy_records_in_total and eddy_records_out_total."}, []string{"direction"}),
		standbyParts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eddy_standby_partitions", Help: "Partitions this worker keeps a warm copy of (standby_replicas) without owning them."}),
		standbyLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eddy_standby_lag_records", Help: "Changelog offsets a standby copy was behind before its last catch-up (what a failover to this worker would restore; under exactly_once the transaction marker that ends the changelog counts one), by store and partition."}, []string{"store", "partition"}),
		standbyRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eddy_standby_records_total", Help: "Changelog records read into standby copies since start."}),
	}
	if reg != nil {
		reg.MustRegister(m.recordsIn, m.recordsOut, m.deadLetters, m.alerts, m.amSent, m.late, m.filtered, m.duplicates,
			m.commitSeconds, m.commits, m.restoreDone, m.restoreTotal, m.restored, m.lag,
			m.streamTime, m.openWindows, m.ready, m.tasks, m.registryWaiting, m.tooLarge, m.deadLetterRefs, m.fieldMissing,
			m.wmWait, m.wmHolder, m.wmMovedOn, m.wmRecords, m.standbyParts, m.standbyLag, m.standbyRecords)
	}
	return m
}
