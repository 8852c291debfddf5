package schema

import (
	"encoding/binary"
	"fmt"
)

// The Confluent wire format frames every Avro record value as
//
//	byte 0      magic byte, always 0
//	bytes 1..4  schema id, big-endian unsigned 32-bit
//	bytes 5..   the Avro binary body, written with that schema
//
// It is what Confluent's, Apicurio's (in its Confluent mode) and most other
// Kafka serializers write, so eddy reads their records as they are.
const (
	// WireMagic is the first byte of every wire-format record.
	WireMagic byte = 0
	// WireHeaderLen is the length of the header before the Avro body.
	WireHeaderLen = 5
)

// AppendWire appends the wire-format framing of body under schema id to
// dst and returns the extended slice. id must fit in 32 bits (registry ids
// do); only its low 32 bits are written.
func AppendWire(dst []byte, id int, body []byte) []byte {
	dst = append(dst, WireMagic, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(id))
	return append(dst, body...)
}

// ParseWire splits a wire-format record into its schema id and Avro body.
// body aliases b. The errors are of class ErrTooShort (fewer than 5 bytes,
// including an empty or null value) and ErrBadMagic (first byte not 0: the
// value was not written by a schema-registry serializer).
func ParseWire(b []byte) (id int, body []byte, err error) {
	if len(b) < WireHeaderLen {
		return 0, nil, fmt.Errorf("%w: %d bytes, the wire format needs at least %d (magic byte and schema id)", ErrTooShort, len(b), WireHeaderLen)
	}
	if b[0] != WireMagic {
		return 0, nil, fmt.Errorf("%w: first byte is 0x%02x, not 0x00: the value was not written by a schema-registry serializer", ErrBadMagic, b[0])
	}
	return int(binary.BigEndian.Uint32(b[1:5])), b[WireHeaderLen:], nil
}
