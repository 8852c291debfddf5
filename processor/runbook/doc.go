// Package runbook is eddy's runbooks: Markdown documents with pipeline
// blocks in the prose, each run as a preview on the live stream.
//
// A block is a fenced code block whose info string is "eddy": the
// pipeline YAML of topology.Parse, then a line "---" and the block's
// display (chart, table or events; see Display). The package holds the
// document model and everything a preview needs that is not HTTP; the
// console (processor/console, runbooks.go) serves the pages. A block with
// a rollups list runs every rollup; its display shows the one its rollup
// key names (Block.Rollup, default the first).
//
// Files:
//
//	document.go  Document: the Markdown (goldmark) and its blocks' byte ranges; Replace for save
//	block.go     Block: a block's pipeline (topology.Parse, errors at document lines) and display; Promote
//	source.go    Hub: one reader per topic, no consumer group, no commits, fanned out to every preview
//	preview.go   Preview: one block run by the engine in memory (processor.Local), bounded; its display state
//
// Nothing here writes to Kafka: a preview's results, late records and dead
// letters stay in its memory.
package runbook
