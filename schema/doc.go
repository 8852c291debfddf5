// Package schema is eddy's side of the schema registry: reading and
// writing Avro records in the Confluent wire format, asking a registry
// about schemas, deriving the schema of a pipeline's results, and eddy's
// own registry for the embedded mode. It does not import the other eddy
// packages; processor uses it.
//
// The parts, by file:
//
//	wireformat.go   the Confluent framing: magic byte 0, 4-byte schema id, Avro body
//	errors.go       the error classes: dead-letter classes of bad records
//	                (DeadLetterClass), ErrRegistryUnavailable (retry, never
//	                dead-letter), registry answers; DecodeError, RegistryError
//	registry.go     the Registry interface and Client, over srclient: a cache
//	                of parsed schemas by id, retries with backoff, contexts
//	serde.go        Decoder (wire bytes → map[string]any, normalised types,
//	                optional pinned subject) and Encoder (map → wire bytes)
//	decodeplan.go   schemas compiled once into decode functions
//	fields.go       FieldKind and Fields: the kinds of a schema's top-level
//	                fields, for start-up checks of a pipeline
//	derive.go       DeriveOutput: the Avro schema of a pipeline's results
//	compat.go       compatibility levels and checks (hamba's reader/writer test)
//	server.go       Server: a Confluent-compatible registry over HTTP
//	store.go        its storage in a compacted Kafka topic, and the invariants
//	                that make it survive restarts
//
// docs/schemas.md is the user-facing description.
package schema
