// Package topology is eddy's pipeline model: what a user writes in a spec
// file, checked and explained before anything runs. It is pure: no network,
// no disk, no goroutines, and it imports none of eddy's other packages.
//
// The parts, by file:
//
//   - spec.go: the Spec data model, one struct per YAML mapping; every field
//     documents its default.
//   - parse.go: Parse (strict YAML decoding, unknown keys named with their
//     line), SetDefaults, and percentile ops (p99 -> quantile 0.99).
//   - validate.go: Validate, which reports every problem at once, each a
//     *FieldError naming the key and saying how to fix it (errors.go).
//   - expr.go: filter and where expressions (expr-lang), compiled once with
//     CompileBool or Spec.Compile, checked against the record schema when
//     one is known, and evaluated per record with Expr.Eval.
//   - rollups.go: several rollups in one pipeline (Spec.Rollups): each
//     rollup's defaults and checks, the rules of chained rollups (from),
//     and RollupSpecs, which turns each rollup into a single-rollup Spec
//     for the runtime.
//   - topics.go: the names of the consumer group and of the topics eddy
//     creates (repartition, changelog, late, dead-letter), for every
//     rollup.
//   - window.go: WindowRule, the window arithmetic, close rule and
//     closed-session retention shared by the runtime (processor/engine)
//     and Describe.
//   - describe.go: Describe, the topology explained in plain words, with a
//     worked example of windows and lateness.
//
// The user-facing reference of the spec is docs/pipeline-spec.md; a test
// parses every example in it and checks that it mentions every key.
package topology
