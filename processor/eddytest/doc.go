// Package eddytest is the test kit for eddy pipelines: it runs a pipeline
// on records a test chooses, with the code `eddy run` runs, and reports
// what the pipeline wrote (results, late records, dead letters, alert
// transitions). `eddy test` is built on it; docs/testing-pipelines.md is
// the user's guide.
//
// Two ways in:
//   - Driver (New, Pipe, AdvanceWallClock, Results, ...) drives a pipeline
//     step by step, in process, on processor.Local: the shell's stateless
//     steps, the engine's tasks and the shell's encoders, with a wall
//     clock that moves only when told. See Example.
//   - Case is a YAML test case (LoadCases, ParseCase): steps of records and
//     wall-clock moves, and expectations. Case.Run runs it in process,
//     Case.RunKafka on a real cluster (fresh topics, the pipeline as a
//     consumer-group member, processor.App, with the case's clock), and
//     Case.Check compares an Outcome with the expectations, one line per
//     mismatch naming the window and field. Case.Expected and Case.Update
//     are `eddy test --update`.
//
// Files:
//   - driver.go: Driver, Record, Outcome and the decoded outputs.
//   - cases.go: the case format, its plan of steps, Check, Expected, Update.
//   - kafka.go: the Kafka mode (RunKafka) and its waits on App.Settle.
//   - registry.go: MemRegistry, an in-memory schema registry for Avro
//     pipelines run in process.
//
// Pipelines with several rollups: every rollup's results and alerts are
// decoded with its own key and aggregates, and carry its name (Result.Rollup,
// Alert.Rollup; late records and dead letters from the eddy.rollup
// header); a case's expectations name theirs with rollup:, the first by
// default (Check).
//
// What the kit does not model (broker failures, rebalances, the
// interleaving of several source partitions, ...) is listed in
// docs/testing-pipelines.md.
package eddytest
