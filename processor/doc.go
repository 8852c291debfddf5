// Package processor runs a pipeline on Kafka: the Kafka shell around the
// pure engine of processor/engine.
//
// # Running a pipeline from Go
//
// The stable API is small: parse a spec with topology.Parse (or build one
// and call Validate), make an App with New, and Run it until its context
// ends; Ready and Handler say whether every owned partition is restored
// and processing (the /readyz of `eddy run`). Example (example_test.go)
// runs one on an in-process Kafka. The schema helpers are what `eddy
// describe` and `eddy run` use; they are exported for cmd/eddy and may
// change between versions. The reset API (PlanReset, ExecuteReset) and
// topic administration (EnsureTopics, CheckTopics) are package
// processor/admin, which needs no App.
//
// # Files
//
//   - app.go: Config, New, Run (the group member and its processing loop);
//     ids.go: the worker's client and transactional ids
//   - rollups.go: several rollups of one source read (stages sharing a
//     key and repartition topic, a task per rollup and partition, chained
//     rollups following the task they read; issue 20)
//   - process.go: the per-record steps: a poll split between the tasks
//     and the repartition stage, through the engine
//   - parallel.go: parallel tasks: a poll's records of each task on one
//     of up to Config.Parallelism goroutines, every one done before
//     punctuate and the commit (issue 17)
//   - commit.go, txn.go: the commit protocol (at-least-once, exactly-once)
//   - assign.go, restore.go: partitions assigned and revoked, restore as
//     a task state outside the rebalance callback
//   - standby.go, standby_balance.go: standby replicas (warm copies of
//     other workers' tasks, kept by catching up their changelogs) and the
//     assignment that hands a dead worker's partitions to them (issue 17)
//   - keeper.go, topiccheck.go, limits.go: eddy's topics while the
//     worker runs (created and checked at start by processor/admin), their
//     size limits, the repartition purge, expired offsets, records older
//     than a topic's retention
//   - partitioner.go: the producer's partitioner (changelogs by task,
//     watermark records by hand, the rest by key hash)
//   - watermarks.go: input partitions' watermarks through the repartition
//     topic, idle and stalled inputs, their metrics (issue 15)
//   - fields_derived.go, lookup.go: derived fields and lookup tables, the
//     stateless steps before the key
//   - registry_wait.go, schemas.go: the schema registry and its outages
//   - alertpub.go, alertmanager.go: alert transitions out
//   - status.go: read-only views for the console
//   - local.go, outrec.go: Local, a pipeline run in process on given
//     records with the stateless steps, engine and encoders of the App
//     (`eddy test`, package eddytest; runbook previews); the pure
//     builders of the records the shell writes
package processor
