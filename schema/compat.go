package schema

import (
	"fmt"

	"github.com/hamba/avro/v2"
)

// Compatibility levels of the embedded registry, as Confluent names them.
// A subject's level decides which new versions it accepts:
//
//	BACKWARD             the new schema can read data written with the latest version
//	                     (consumers upgrade first). The default.
//	BACKWARD_TRANSITIVE  ... with every earlier version
//	FORWARD              the latest version can read data written with the new schema
//	                     (producers upgrade first)
//	FORWARD_TRANSITIVE   every earlier version can read data written with the new schema
//	FULL                 both BACKWARD and FORWARD against the latest version
//	FULL_TRANSITIVE      both, against every earlier version
//	NONE                 anything goes
const (
	LevelBackward           = "BACKWARD"
	LevelBackwardTransitive = "BACKWARD_TRANSITIVE"
	LevelForward            = "FORWARD"
	LevelForwardTransitive  = "FORWARD_TRANSITIVE"
	LevelFull               = "FULL"
	LevelFullTransitive     = "FULL_TRANSITIVE"
	LevelNone               = "NONE"

	// DefaultLevel is the level of a registry and subject not configured.
	DefaultLevel = LevelBackward
)

func validLevel(l string) bool {
	switch l {
	case LevelBackward, LevelBackwardTransitive, LevelForward, LevelForwardTransitive,
		LevelFull, LevelFullTransitive, LevelNone:
		return true
	}
	return false
}

// versioned is one earlier version of a subject, for a compatibility check.
type versioned struct {
	version int
	avro    avro.Schema
}

// checkCompat checks candidate against the earlier versions of a subject
// (ascending) under level and returns one readable message per failure;
// none means compatible. Non-transitive levels look at the latest version
// only. hamba's Compatible(reader, writer) answers "can reader read data
// written with writer": BACKWARD asks it with the candidate as reader,
// FORWARD with the earlier version as reader.
//
// Each check uses a fresh avro.SchemaCompatibility: hamba caches answers by
// schema fingerprint, which ignores defaults, so a shared cache would
// answer for "field without default" what it learnt for "with default".
func checkCompat(level string, candidate avro.Schema, earlier []versioned) []string {
	if len(earlier) == 0 || level == LevelNone {
		return nil
	}
	var backward, forward, transitive bool
	switch level {
	case LevelBackward:
		backward = true
	case LevelBackwardTransitive:
		backward, transitive = true, true
	case LevelForward:
		forward = true
	case LevelForwardTransitive:
		forward, transitive = true, true
	case LevelFull:
		backward, forward = true, true
	case LevelFullTransitive:
		backward, forward, transitive = true, true, true
	}
	against := earlier
	if !transitive {
		against = earlier[len(earlier)-1:]
	}
	c := avro.NewSchemaCompatibility()
	var msgs []string
	for i := len(against) - 1; i >= 0; i-- { // newest first: the most relevant
		v := against[i]
		if backward {
			if err := c.Compatible(candidate, v.avro); err != nil {
				msgs = append(msgs, fmt.Sprintf("BACKWARD: the new schema cannot read data written with version %d: %v", v.version, err))
			}
		}
		if forward {
			if err := c.Compatible(v.avro, candidate); err != nil {
				msgs = append(msgs, fmt.Sprintf("FORWARD: version %d cannot read data written with the new schema: %v", v.version, err))
			}
		}
	}
	return msgs
}
