package schema

import (
	"errors"
	"fmt"
	"strings"
)

// Classes of records that cannot be decoded. Each is a distinct dead-letter
// class: the error text of the sentinel is the stable class name that goes
// into the dead-letter record's header (as processor's classes do), so
// dashboards and replays can rely on it. DeadLetterClass picks the class out
// of any error the Decoder returns.
var (
	// ErrTooShort: the value has fewer than 5 bytes (magic byte and schema
	// id), including an empty or null value.
	ErrTooShort = errors.New("wire_too_short")
	// ErrBadMagic: the first byte is not 0, so the value was not written by
	// a schema-registry serializer (plain JSON, a string, another framing).
	ErrBadMagic = errors.New("wire_bad_magic")
	// ErrUnknownSchema: the registry answered that it has no schema with
	// the record's id (Confluent error 40403).
	ErrUnknownSchema = errors.New("unknown_schema")
	// ErrWrongSubject: the record's schema exists but is not registered
	// under the subject the pipeline is pinned to (the producer wrote with
	// another topic's schema).
	ErrWrongSubject = errors.New("wrong_subject")
	// ErrAvroDecode: the body does not decode with the record's schema
	// (truncated, corrupt, bytes left over), or the schema is not Avro.
	ErrAvroDecode = errors.New("avro_decode")
)

// ErrRegistryUnavailable is not a record class: the registry could not be
// asked or did not answer usefully (down, slow, 5xx, 429, unexpected
// answers such as 401/403 or a 404 without a Confluent error code). The
// record's fate is undecided: pause and retry it, never dead-letter it and
// never commit past it.
var ErrRegistryUnavailable = errors.New("registry_unavailable")

// ErrRegistryAuth: the registry refused eddy's credentials (HTTP 401) or
// the permission asked for (HTTP 403), or eddy does not trust the
// registry's TLS certificate. It wraps ErrRegistryUnavailable: a
// record whose schema lookup gets it stays undecided (paused, never
// dead-lettered), since credentials can be fixed without losing the
// record. But retrying with the same credentials gives the same answer, so
// the client does not retry it, and start-up and the CLI stop on it
// (errors.Is(err, ErrRegistryAuth)) instead of waiting.
var ErrRegistryAuth error = &subclass{name: "registry_unauthorized", parent: ErrRegistryUnavailable}

// subclass is a sentinel that is also its parent class for errors.Is.
type subclass struct {
	name   string
	parent error
}

func (e *subclass) Error() string { return e.name }
func (e *subclass) Unwrap() error { return e.parent }

// Answers of the registry to registration and lookups. They are not record
// classes either: they come from eddy's own start-up and CLI calls.
var (
	// ErrUnknownSubject: the subject has no versions (Confluent 40401).
	ErrUnknownSubject = errors.New("unknown_subject")
	// ErrUnknownVersion: the subject has no such version (Confluent 40402).
	ErrUnknownVersion = errors.New("unknown_version")
	// ErrIncompatible: the registry refused a schema under the subject's
	// compatibility level (HTTP 409).
	ErrIncompatible = errors.New("incompatible_schema")
	// ErrInvalidSchema: the schema text is not a valid Avro schema (Confluent
	// 42201), or a schema fetched from the registry is not Avro.
	ErrInvalidSchema = errors.New("invalid_schema")
	// ErrAvroEncode: a value does not fit the Encoder's schema.
	ErrAvroEncode = errors.New("avro_encode")
)

// deadLetterClasses are the record classes, in the order DeadLetterClass
// tries them.
var deadLetterClasses = []error{ErrTooShort, ErrBadMagic, ErrWrongSubject, ErrUnknownSchema, ErrAvroDecode}

// DeadLetterClass returns the record class of err (one of ErrTooShort,
// ErrBadMagic, ErrUnknownSchema, ErrWrongSubject, ErrAvroDecode) and true
// when the record should go to the dead-letter topic. It returns nil and
// false for nil, for anything wrapping ErrRegistryUnavailable (retry
// instead) and for errors that are not about the record (a canceled
// context): the caller must not dead-letter those.
func DeadLetterClass(err error) (error, bool) {
	if err == nil || errors.Is(err, ErrRegistryUnavailable) {
		return nil, false
	}
	for _, c := range deadLetterClasses {
		if errors.Is(err, c) {
			return c, true
		}
	}
	return nil, false
}

// DecodeError is a record the Decoder could not decode: where it failed
// (the schema id and pinned subject) and why (Err wraps one of the classes
// above, or ErrRegistryUnavailable).
type DecodeError struct {
	ID      int    // schema id from the record's header; -1 when the header was unreadable
	Subject string // the Decoder's pinned subject, "" when not pinned
	Err     error
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	if e.ID >= 0 {
		fmt.Fprintf(&b, "schema id %d", e.ID)
	} else {
		b.WriteString("schema id unknown")
	}
	if e.Subject != "" {
		fmt.Fprintf(&b, " (subject %q)", e.Subject)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// RegistryError is a failed call to a schema registry: what was asked, what
// came back, and the class (ErrRegistryUnavailable, ErrRegistryAuth, ErrUnknownSchema,
// ErrUnknownSubject, ErrUnknownVersion, ErrIncompatible, ErrInvalidSchema).
type RegistryError struct {
	Op      string // what eddy asked, e.g. `get schema 7`, `register under "orders-value"`
	Status  int    // HTTP status; 0 when no response came back
	Code    int    // Confluent error_code of the answer; 0 when it had none
	Message string // the registry's message, if any
	Class   error
	Err     error // the underlying error (transport, srclient, context)
}

func (e *RegistryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema registry: %s: %v", e.Op, e.Class)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, " (error code %d)", e.Code)
	}
	switch {
	case e.Message != "":
		fmt.Fprintf(&b, ": %s", e.Message)
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *RegistryError) Unwrap() []error { return []error{e.Class, e.Err} }
