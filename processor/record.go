package processor

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/processor/engine/groupkey"
)

// Error classes of records that cannot be processed. Each dead-letter record
// carries its class in the eddy.error.class header, and the
// eddy_dead_letters_total metric counts by class.
var (
	ErrDecode          = engine.ErrDecode          // the value is not what the source format says
	ErrEventTime       = engine.ErrEventTime       // the event time field is missing or unusable
	ErrFutureTimestamp = engine.ErrFutureTimestamp // event time too far ahead of the wall clock
	ErrMissingKey      = engine.ErrMissingKey      // a grouping key field is missing
	ErrExpression      = engine.ErrExpression      // a derived field, filter or where expression failed
	ErrAggregateField  = engine.ErrAggregateField  // an aggregate's input is not a usable value
	ErrKeyTooLong      = engine.ErrKeyTooLong      // the grouping key exceeds the store's limit
	ErrInternalHeader  = engine.ErrInternalHeader  // a repartition record lacks eddy's headers
	ErrLookupMiss      = engine.ErrLookupMiss      // no lookup table entry matched (on_miss: dead_letter)
)

// RecordError is why one record could not be processed, and where it was.
type RecordError struct {
	Class     error // one of the Err* classes above
	Topic     string
	Partition int32
	Offset    int64
	Field     string // the field at fault, if any
	Err       error
}

func (e *RecordError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d@%d: %s", e.Topic, e.Partition, e.Offset, e.Class)
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *RecordError) Unwrap() []error { return []error{e.Class, e.Err} }

// valueDecoder turns a record value into fields: jsonDecoder, or
// avroDecoder (schemas.go) for the Confluent wire format. ctx bounds
// registry calls.
type valueDecoder interface {
	// DecodeInto decodes into m, emptied first (a new map when m is nil),
	// and returns it; on an error m's content is undefined.
	DecodeInto(ctx context.Context, value []byte, m map[string]any) (map[string]any, error)
}

type jsonDecoder struct{}

func (jsonDecoder) DecodeInto(_ context.Context, value []byte, m map[string]any) (map[string]any, error) {
	clear(m) // encoding/json adds an object's members to a non-nil map
	if err := json.Unmarshal(value, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("value is not a JSON object")
	}
	return m, nil
}

// Event times eddy accepts, in milliseconds since the Unix epoch. An event
// time becomes the Kafka timestamp of the repartition record, and window
// bounds are computed from it: it must be a timestamp Kafka accepts (the
// Kafka clients refuse negative timestamps; -1 means "none") and one that
// RFC 3339 can write (the year 9999 at most), so window arithmetic near it
// cannot overflow an int64.
const (
	minEventTime int64 = 0
	maxEventTime int64 = 253402300799999 // 9999-12-31T23:59:59.999Z
)

// errEventTimeRange says an event time is outside [minEventTime,
// maxEventTime]; eventTime wraps it with the value.
var errEventTimeRange = errors.New("outside the range of a Kafka timestamp (1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z)")

// eventTime reads the event time of a record in milliseconds: from field
// (a number of ms, or an RFC 3339 string) or, when field is empty, the
// record timestamp. Every error is a bad event time (ErrEventTime): the
// value is missing, not a time, not finite, or outside the range of a
// Kafka timestamp. Fractional milliseconds are truncated toward zero.
func eventTime(fields map[string]any, field string, rec *kgo.Record) (int64, error) {
	if field == "" {
		ms := rec.Timestamp.UnixMilli()
		if ms < minEventTime || ms > maxEventTime {
			return 0, fmt.Errorf("record timestamp %d: %w", ms, errEventTimeRange)
		}
		return ms, nil
	}
	v, ok := fields[field]
	if !ok || v == nil {
		return 0, fmt.Errorf("missing")
	}
	var ms int64
	switch t := v.(type) {
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return 0, fmt.Errorf("%v is not a finite number", t)
		}
		// Compared as floats: converting an out-of-range float to int64
		// is undefined in Go (1e300 becomes the minimum int64 on amd64).
		if t < float64(minEventTime) || t >= float64(maxEventTime)+1 {
			return 0, fmt.Errorf("%v ms: %w", t, errEventTimeRange)
		}
		return int64(t), nil
	case float32:
		return eventTime(map[string]any{field: float64(t)}, field, rec)
	case int64:
		ms = t
	case int32:
		ms = int64(t)
	case int:
		ms = int64(t)
	case string:
		ts, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return 0, fmt.Errorf("not RFC 3339 or epoch milliseconds: %q", t)
		}
		ms = ts.UnixMilli()
		if ms < minEventTime || ms > maxEventTime {
			return 0, fmt.Errorf("%q: %w", t, errEventTimeRange)
		}
		return ms, nil
	case time.Time:
		ms = t.UnixMilli()
		if ms < minEventTime || ms > maxEventTime {
			return 0, fmt.Errorf("%s: %w", t.UTC().Format(time.RFC3339Nano), errEventTimeRange)
		}
		return ms, nil
	default:
		return 0, fmt.Errorf("type %T is neither a number of milliseconds nor an RFC 3339 string", v)
	}
	if ms < minEventTime || ms > maxEventTime {
		return 0, fmt.Errorf("%d ms: %w", ms, errEventTimeRange)
	}
	return ms, nil
}

// groupKey builds the grouping key (groupkey.Build); on a missing field it
// returns the field's name.
func groupKey(fields map[string]any, keyFields []string) (string, string, error) {
	return groupkey.Build(fields, keyFields)
}

// Header names eddy sets.
const (
	hdrSource     = "eddy.src"      // repartition: source topic, partition, offset (binary)
	hdrOrigKey    = "eddy.orig-key" // repartition: the record's original key
	hdrOrigTS     = "eddy.orig-ts"  // repartition: the record's original Kafka timestamp (ms, varint)
	hdrErrClass   = "eddy.error.class"
	hdrErrMessage = "eddy.error.message"
	hdrErrField   = "eddy.error.field"
	hdrSchemaID   = "eddy.schema.id" // the record's schema id, when its header was readable
	hdrSrcTopic   = "eddy.source.topic"
	hdrSrcPart    = "eddy.source.partition"
	hdrSrcOffset  = "eddy.source.offset"
	// hdrSrcTime is the Kafka timestamp of the source record (RFC 3339),
	// on late and dead-letter records: their own Kafka timestamp is the
	// time eddy wrote them, so that the topic's retention counts from then.
	hdrSrcTime    = "eddy.source.timestamp"
	hdrLateWindow = "eddy.late.window"
	hdrLateStream = "eddy.late.stream-time"
	hdrLateEvent  = "eddy.late.event-time"
)

func encodeSource(topic string, partition int32, offset int64) []byte {
	b := binary.AppendVarint(nil, int64(partition))
	b = binary.AppendVarint(b, offset)
	return append(b, topic...)
}

func decodeSource(b []byte) (topic string, partition int32, offset int64, ok bool) {
	p, n := binary.Varint(b)
	if n <= 0 {
		return "", 0, 0, false
	}
	o, m := binary.Varint(b[n:])
	if m <= 0 {
		return "", 0, 0, false
	}
	return string(b[n+m:]), int32(p), o, true
}

// sourceOf returns where a record originally came from: its eddy.src
// header for repartition records, else itself. ts is the source record's
// Kafka timestamp in ms, -1 when unknown (a repartition record written by
// an eddy that did not carry it); headers are the record's own, without
// eddy's internal ones.
func sourceOf(rec *kgo.Record) (topic string, partition int32, offset int64, key []byte, headers []kgo.RecordHeader, ts int64) {
	topic, partition, offset, key, ts = rec.Topic, rec.Partition, rec.Offset, rec.Key, rec.Timestamp.UnixMilli()
	repart, origTS := false, int64(-1)
	for _, h := range rec.Headers {
		switch h.Key {
		case hdrSource:
			if t, p, o, ok := decodeSource(h.Value); ok {
				topic, partition, offset, repart = t, p, o, true
			}
		case hdrOrigKey:
			key = h.Value
		case hdrOrigTS:
			if v, n := binary.Varint(h.Value); n > 0 {
				origTS = v
			}
		case hdrFields, hdrSourceWatermark: // internal: the derived and lookup fields, the source's watermark
		default:
			headers = append(headers, h)
		}
	}
	if repart {
		ts = origTS // the record's own timestamp is its event time
	}
	return
}

func strHeader(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
