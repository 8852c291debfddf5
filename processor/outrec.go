package processor

// Builders of the records the shell writes besides its internal topics:
// results, alert transitions, late records and dead letters. They are pure
// (what they need in, one *kgo.Record out), so the App and the in-process
// runner (Local, local.go) encode every output the same way.

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/engine"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
)

// resultRecord is the output topic's record of one window result: the
// encoded key and value, timestamped with the window's end. The caller
// skips silent results (r.Silent).
func (p *pipeline) resultRecord(r result) (*kgo.Record, error) {
	value, err := p.encodeResult(r)
	var key []byte
	if err == nil {
		key, err = p.encodeResultKey(r)
	}
	if err != nil {
		return nil, fmt.Errorf("encode result of window %s %s: %w", r.Window.Key, fmtWindow(r.Window), err)
	}
	return &kgo.Record{Topic: p.spec.Output.Topic, Key: key, Value: value, Timestamp: time.UnixMilli(r.Window.End)}, nil
}

// alertRecord is the alerts topic's record of one alert transition: keyed
// by the grouping key, timestamped with the transition's stream time.
func (p *pipeline) alertRecord(tr engine.AlertTransition) (*kgo.Record, error) {
	al := tr.Alert
	value, err := p.encodeAlert(al)
	if err != nil {
		return nil, fmt.Errorf("encode alert %s for %s: %w", al.Rule, tr.Key, err)
	}
	key, err := p.encodeKey(p.alertKeyEnc, tr.Key)
	if err != nil {
		return nil, fmt.Errorf("encode the key of alert %s for %s: %w", al.Rule, tr.Key, err)
	}
	return &kgo.Record{Topic: p.spec.AlertsTopic(), Key: key, Value: value, Timestamp: time.UnixMilli(tr.At)}, nil
}

// lateRecord is the late topic's record of rec (a source record, or the
// repartition record carrying it), which the engine found late: the
// source record's key, value and headers, and headers saying which window
// it missed and where it came from (src at srcOffset). Its timestamp is
// the wall clock now, so that the late topic's retention counts from now,
// not from the (old) event time; the event time and the source record's
// timestamp are in headers. extra headers follow (eddy.rollup).
func lateRecord(topic string, rec *kgo.Record, late *engine.Late, src state.SourcePartition, srcOffset int64, extra []kgo.RecordHeader, now time.Time) *kgo.Record {
	_, _, _, key, headers, srcTS := sourceOf(rec)
	headers = append(headers,
		strHeader(hdrLateWindow, fmtWindow(late.Window)),
		strHeader(hdrLateEvent, fmtTime(late.EventTime)),
		strHeader(hdrLateStream, fmtTime(late.StreamTime)),
		strHeader(hdrSrcTopic, src.Topic),
		strHeader(hdrSrcPart, strconv.Itoa(int(src.Partition))),
		strHeader(hdrSrcOffset, strconv.FormatInt(srcOffset, 10)),
	)
	if srcTS >= 0 {
		headers = append(headers, strHeader(hdrSrcTime, fmtTime(srcTS)))
	}
	headers = append(headers, extra...)
	return &kgo.Record{Topic: topic, Key: key, Value: rec.Value, Headers: headers, Timestamp: now}
}

// deadLetterRecord is the dead-letter topic's record of rec (a source
// record, or the repartition record carrying it): its original key, value
// and headers, and headers saying why (re's class, message and field) and
// where it came from, then extra. It fills re's location. Its timestamp is
// the wall clock now, so that the topic's retention counts from then; the
// source record's timestamp is in the eddy.source.timestamp header.
func deadLetterRecord(topic string, rec *kgo.Record, re *RecordError, extra []kgo.RecordHeader, now time.Time) *kgo.Record {
	srcTopic, part, off, key, headers, ts := sourceOf(rec)
	re.Topic, re.Partition, re.Offset = srcTopic, part, off
	headers = append(headers,
		strHeader(hdrErrClass, re.Class.Error()),
		strHeader(hdrErrMessage, re.Error()),
		strHeader(hdrSrcTopic, srcTopic),
		strHeader(hdrSrcPart, strconv.Itoa(int(part))),
		strHeader(hdrSrcOffset, strconv.FormatInt(off, 10)),
	)
	if ts >= 0 {
		headers = append(headers, strHeader(hdrSrcTime, fmtTime(ts)))
	}
	headers = append(headers, extra...)
	if re.Field != "" {
		headers = append(headers, strHeader(hdrErrField, re.Field))
	}
	var de *schema.DecodeError
	if errors.As(re.Err, &de) && de.ID >= 0 {
		headers = append(headers, strHeader(hdrSchemaID, strconv.Itoa(de.ID)))
	}
	return &kgo.Record{Topic: topic, Key: key, Value: rec.Value, Headers: headers, Timestamp: now}
}
