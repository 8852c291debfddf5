// Package admin administers a pipeline's Kafka topics and its consumer
// group from outside a running worker: it needs an admin client and the
// spec, not an App, and is what `eddy run` (at start), `eddy reset` and
// `eddy describe --brokers` share.
//
// Files:
//   - topics.go: EnsureTopics, eddy's topics created from the pipeline's
//     topic table (topology.Spec.Topics) when missing, with the source
//     topics' record size limit; DescribeTopicConfigs; MaxBatchBytes.
//   - topiccheck.go: CheckTopics, the settings of existing topics that
//     would delete what eddy writes before it is read, each with its fix
//     (TopicProblem). The running worker's side (logging them, and a
//     guard against records older than a topic's retention) is in
//     processor/topiccheck.go.
//   - reset.go: `eddy reset`: PlanReset and ExecuteReset, the internal
//     topics recreated and the group's offsets moved, with the group
//     checked empty before and after.
//
// The API is for cmd/eddy and package processor; it may change between
// versions.
package admin
