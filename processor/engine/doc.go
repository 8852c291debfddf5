// Package engine is eddy's pure per-partition engine: one Task is one
// partition's windows, aggregation, time and alert rules. Records and a
// wall clock go in (Task.Process, Task.Punctuate; a chained rollup's task
// takes another task's final results, Task.Follow), effects come out as plain
// values (window results, late records, dead letters, alert transitions),
// and Task.Flush hands over the state changes to make durable. It imports
// nothing from Kafka (TestNoKafkaImports), starts no goroutines and calls
// nothing back: the shell, package processor, owns I/O, the consumer
// group and the commit protocol.
//
// Ownership: a Task is used by one goroutine at a time, and owns its
// state.TaskStore while it lives. A Pipeline is immutable and shared.
// Effects belong to the caller and are valid until its next call.
//
// Files:
//   - pipeline.go: Pipeline, the compiled spec; aggregate inputs; the
//     dead-letter classes.
//   - main_test.go: TestNoKafkaImports (go list -deps) and goleak.
//   - task_test.go, testdata/windows/*.txt: data-driven scenarios run
//     through Process, Punctuate and Flush; alerts_test.go the alert rules
//     through the same harness.
//   - effects.go: Record (input), Effects and their parts (output).
//   - task.go: Task: stream time, idle advance, duplicate detection,
//     Process, Punctuate, Flush, Checkpoint.
//   - window.go: window assignment (topology.WindowRule's arithmetic),
//     session merging, the open-window index and closing.
//   - chain.go: chained rollups (issue 20): Task.Follow merges the final
//     results of the rollup a chained one reads into its coarser windows,
//     with stream time from that task's ClosedThrough; what each
//     aggregate's merge guarantees, replays, alert rules.
//     chain_test.go checks a chain 10 s → 1 min → 5 min against plain
//     loops over the raw records, crashes and replays (of the chained
//     task alone, and of the whole chain with the chained tasks
//     committed ahead), emit: update and alert rules.
//   - groupkey/ (package groupkey): the one codec of grouping keys (a
//     JSON array of strings): Build, Parts, SplitJSON. The shell and the
//     alert rules use it; nothing else builds or parses a key.
//   - alert/ (package alert): the alert rules, behind a narrow interface
//     (alert.State: OnRecord, OnWindowClosed, Due, Tick, Load, Flush,
//     Dirty) that knows nothing of tasks or pipelines. A Task owns one
//     State and feeds it; its persisted form is aux entries of the task's
//     store, a key kind of their own in Pebble and in the changelog
//     (state/store.go).
//
// Window arithmetic and the close rule are topology's (WindowRule), shared
// with eddy describe.
package engine
