package console

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/schema"
)

// Record is one Kafka record as the API shows it.
type Record struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// Timestamp is the record's Kafka timestamp (RFC 3339, ms).
	Timestamp string `json:"timestamp"`
	Key       string `json:"key"`
	// Value is the decoded value (a JSON object) when it is JSON or Avro
	// the registry knows, else the bytes as text (Text) and Format "bytes".
	Value  map[string]any `json:"value,omitempty"`
	Text   string         `json:"text,omitempty"`
	Format string         `json:"format"` // json, avro or bytes
	// Headers in record order.
	Headers []Header `json:"headers,omitempty"`
	// Reason says in plain words why a dead-letter or late record is
	// there, from eddy's headers; empty for other records. Detail adds
	// the error message and where the record came from.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Header is one record header, its value as text.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// decodeRecord turns rec into a Record and the fields a filter sees (the
// decoded value; nil when the value is not an object).
func (c *Console) decodeRecord(ctx context.Context, rec *kgo.Record) Record {
	return decodeWith(ctx, c.dec, rec)
}

// decodeWith is decodeRecord with dec (nil: Avro shown as bytes).
func decodeWith(ctx context.Context, dec *schema.Decoder, rec *kgo.Record) Record {
	out := Record{
		Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		Timestamp: rec.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Key:       printable(rec.Key),
	}
	h := map[string]string{}
	for _, x := range rec.Headers {
		v := printable(x.Value)
		out.Headers = append(out.Headers, Header{Key: x.Key, Value: v})
		h[x.Key] = v
	}
	out.Reason, out.Detail = reasonOf(h)
	switch {
	case len(rec.Value) >= 5 && rec.Value[0] == 0 && dec != nil:
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := dec.Decode(dctx, rec.Value)
		cancel()
		if err == nil {
			out.Value, out.Format = jsonSafe(m), "avro"
			return out
		}
	case len(rec.Value) > 0 && rec.Value[0] == '{':
		var m map[string]any
		if json.Unmarshal(rec.Value, &m) == nil {
			out.Value, out.Format = m, "json"
			return out
		}
	}
	out.Text, out.Format = printable(rec.Value), "bytes"
	return out
}

// jsonSafe makes an Avro-decoded map encodable (times as RFC 3339, bytes
// as text).
func jsonSafe(m map[string]any) map[string]any {
	for k, v := range m {
		switch x := v.(type) {
		case time.Time:
			m[k] = x.UTC().Format(time.RFC3339Nano)
		case []byte:
			m[k] = printable(x)
		case map[string]any:
			m[k] = jsonSafe(x)
		}
	}
	return m
}

// printable is b as text: as is when it is UTF-8, else escaped.
func printable(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return fmt.Sprintf("%q", b)
}

// classWords explains each dead-letter class (the eddy.error.class header)
// in plain words. The keys are the processor's and schema's own class
// values, so a renamed class fails to compile here, not silently.
var classWords = map[string]string{
	processor.ErrDecode.Error():          "the value is not what the source format says (not a JSON object, or not decodable)",
	processor.ErrEventTime.Error():       "the event time field is missing or is not a usable time",
	processor.ErrFutureTimestamp.Error(): "the event time is too far ahead of the wall clock (more than time.max_future)",
	processor.ErrMissingKey.Error():      "a field of the grouping key is missing",
	processor.ErrExpression.Error():      "the filter or a where expression failed on this record",
	processor.ErrAggregateField.Error():  "an aggregate's input field is not a usable value (e.g. a string where a number is needed)",
	processor.ErrKeyTooLong.Error():      "the grouping key is longer than the store allows",
	processor.ErrInternalHeader.Error():  "a repartition record lacks eddy's headers",
	processor.ErrTooLarge.Error():        "the record is larger than the topic accepts",
	schema.ErrTooShort.Error():           "the value is too short for the Confluent wire format (magic byte and schema id)",
	schema.ErrBadMagic.Error():           "the value does not start with the Confluent wire format's magic byte: it was not written with a schema registry",
	schema.ErrUnknownSchema.Error():      "the registry has no schema with the record's schema id",
	schema.ErrWrongSubject.Error():       "the record's schema is not registered under the pipeline's subject",
	schema.ErrAvroDecode.Error():         "the value does not decode with the record's Avro schema",
}

// hdrRollup, on a late or dead-letter record of a pipeline with several
// rollups, names the rollup it is late for, or whose aggregate refused it
// (the processor's header of that name).
const hdrRollup = "eddy.rollup"

// reasonOf says why a record is in the dead-letter or late topic, from
// eddy's headers: in plain words, then the details; "" when it has none of
// them.
func reasonOf(h map[string]string) (reason, detail string) {
	if class, ok := h["eddy.error.class"]; ok {
		words := classWords[class]
		if words == "" {
			words = "error class " + class
		}
		reason = "Dead letter: " + words
		if f := h["eddy.error.field"]; f != "" {
			reason += " (field " + f + ")"
		}
		if r := h[hdrRollup]; r != "" {
			reason += " (rollup " + r + ")"
		}
		detail = h["eddy.error.message"]
		if t := h["eddy.source.topic"]; t != "" {
			detail += fmt.Sprintf(" — from %s partition %s offset %s", t, h["eddy.source.partition"], h["eddy.source.offset"])
		}
		return reason + ".", detail
	}
	if w, ok := h["eddy.late.window"]; ok {
		reason := "Late: its window had closed when it arrived."
		if r := h[hdrRollup]; r != "" {
			reason = "Late for rollup " + r + ": its window had closed when it arrived."
		}
		return reason, fmt.Sprintf("event time %s, window %s, stream time %s",
			h["eddy.late.event-time"], w, h["eddy.late.stream-time"])
	}
	return "", ""
}
