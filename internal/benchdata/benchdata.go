// Package benchdata holds what the side-by-side benchmark harness
// (bench/cmd/harness) and eddy's in-process benchmarks share.
package benchdata

// EventSchema is the one input schema of every benchmark workload, about
// 136 bytes per record. bench/kstreams/EddyPeer.java decodes it by hand,
// field by field, in this order: keep the two in step.
const EventSchema = `{"type":"record","name":"Event","namespace":"bench","fields":[
 {"name":"ts","type":"long"},
 {"name":"key","type":"string"},
 {"name":"service","type":"string"},
 {"name":"endpoint","type":"string"},
 {"name":"status","type":"int"},
 {"name":"latency_ms","type":"double"},
 {"name":"region","type":"string"},
 {"name":"user_agent","type":"string"},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"request_id","type":"string"}
]}`
