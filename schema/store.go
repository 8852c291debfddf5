package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The embedded registry keeps its state in one compacted, single-partition
// Kafka topic (by default `_schemas`), in the record layout of Confluent's
// registry:
//
//	key   {"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}
//	value {"subject":"orders-value","version":1,"id":1,"schema":"...","deleted":false}
//
//	key   {"keytype":"CONFIG","subject":null,"magic":0}          (registry level)
//	key   {"keytype":"CONFIG","subject":"orders-value","magic":0} (subject level)
//	value {"compatibilityLevel":"FULL"}
//
// Keys are marshalled from fixed structs, so the same key is always the
// same bytes and compaction keeps only the last value of each.
//
// Invariants:
//   - Memory is a cache of the topic. A change is applied to memory only
//     after Kafka acknowledged its record (acks=all), so nothing is served
//     that a restart could lose.
//   - Before every change the server reads the topic to its end (catchUp),
//     so a record whose produce failed but landed anyway, or one written by
//     another instance, is seen before the next id is chosen. Ids are the
//     highest id seen plus one: run one registry instance at a time; two
//     instances registering concurrently could both pick the same id.
//   - Applying a record is idempotent: reading a record twice (our own
//     write, then catchUp) changes nothing.
//   - On start, NewServer reads the topic to its end before it returns, so
//     a Server that exists has all the state the topic had.

type storeKey struct {
	KeyType string  `json:"keytype"`
	Subject *string `json:"subject"`
	Version int     `json:"version,omitempty"`
	Magic   int     `json:"magic"`
}

type storeSchema struct {
	Subject    string          `json:"subject"`
	Version    int             `json:"version"`
	ID         int             `json:"id"`
	Schema     string          `json:"schema"`
	SchemaType string          `json:"schemaType,omitempty"`
	References json.RawMessage `json:"references,omitempty"`
	Deleted    bool            `json:"deleted"`
}

type storeConfig struct {
	CompatibilityLevel string `json:"compatibilityLevel"`
}

const (
	keySchema = "SCHEMA"
	keyConfig = "CONFIG"
)

// ensureTopic creates the topic (compacted, one partition: the order of
// changes matters) or checks that an existing one has one partition.
func ensureTopic(ctx context.Context, adm *kadm.Client, topic string) error {
	cfg := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	resp, err := adm.CreateTopic(ctx, 1, -1, cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create registry topic %q: %w", topic, err)
	}
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("describe registry topic %q: %w", topic, err)
	}
	if d, ok := td[topic]; ok && d.Err == nil && len(d.Partitions) != 1 {
		return fmt.Errorf("registry topic %q has %d partitions; it needs exactly 1 (the order of changes matters): use another topic", topic, len(d.Partitions))
	}
	return nil
}

// endOffset returns the end offset of the topic's partition, retrying the
// errors of a topic that was just created and whose leader is not known yet.
func (s *Server) endOffset(ctx context.Context) (int64, error) {
	for {
		ends, err := s.adm.ListEndOffsets(ctx, s.topic)
		if err == nil {
			o, ok := ends.Lookup(s.topic, 0)
			switch {
			case !ok:
				err = kerr.UnknownTopicOrPartition
			case o.Err != nil:
				err = o.Err
			default:
				return o.Offset, nil
			}
		}
		if !kerr.IsRetriable(err) && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("end offset of registry topic %q: %w", s.topic, err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("end offset of registry topic %q: %w (last error: %w)", s.topic, ctx.Err(), err)
		}
	}
}

// catchUp reads the topic from s.next to its current end and applies what
// it reads. The caller holds writeMu (or is NewServer).
func (s *Server) catchUp(ctx context.Context) error {
	end, err := s.endOffset(ctx)
	if err != nil {
		return err
	}
	if end <= s.next {
		return nil
	}
	s.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: {0: kgo.NewOffset().At(s.next)}})
	defer s.cl.RemoveConsumePartitions(map[string][]int32{s.topic: {0}})
	for s.next < end {
		fs := s.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read registry topic %q (at offset %d of %d): %w", s.topic, s.next, end, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("read registry topic %q: %w", s.topic, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic != s.topic || r.Partition != 0 {
				return
			}
			s.mu.Lock()
			s.apply(r.Key, r.Value)
			s.mu.Unlock()
			s.next = max(s.next, r.Offset+1)
		})
	}
	return nil
}

// write produces one change and, once Kafka acknowledged it, applies it.
// The caller holds writeMu and has caught up.
func (s *Server) write(ctx context.Context, key, value any) error {
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	v, err := json.Marshal(value)
	if err != nil {
		return err
	}
	r := &kgo.Record{Topic: s.topic, Partition: 0, Key: k, Value: v}
	if err := s.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		// The record may still land: the next catchUp reads it if so.
		return fmt.Errorf("write to registry topic %q: %w", s.topic, err)
	}
	s.mu.Lock()
	s.apply(k, v)
	s.mu.Unlock()
	if r.Offset == s.next {
		s.next++
	} // else: records we have not read precede ours; catchUp reads them (and ours again)
	return nil
}

// apply changes memory for one record of the topic. Records it does not
// understand (other key types, other schema types, broken JSON) are
// skipped: the topic may have been written by Confluent's registry. The
// caller holds mu.
func (s *Server) apply(key, value []byte) {
	var k storeKey
	if json.Unmarshal(key, &k) != nil {
		return
	}
	switch k.KeyType {
	case keyConfig:
		var c storeConfig
		if value != nil && (json.Unmarshal(value, &c) != nil || !validLevel(c.CompatibilityLevel)) {
			return
		}
		switch {
		case k.Subject == nil:
			s.global = c.CompatibilityLevel // "" for a tombstone: back to the default
		case value == nil:
			delete(s.levels, *k.Subject)
		default:
			s.levels[*k.Subject] = c.CompatibilityLevel
		}
	case keySchema:
		if k.Subject == nil {
			return
		}
		var v storeSchema
		if value == nil || json.Unmarshal(value, &v) != nil || v.Deleted {
			s.removeVersion(*k.Subject, k.Version)
			return
		}
		if (v.SchemaType != "" && v.SchemaType != "AVRO") || v.ID <= 0 || v.Version <= 0 {
			return
		}
		if _, ok := s.schemas[v.ID]; !ok {
			parsed, err := ParseSchema(v.Schema)
			if err != nil {
				return
			}
			text := compactJSON(v.Schema)
			s.schemas[v.ID] = &stored{id: v.ID, text: text, avro: parsed}
			if _, dup := s.byText[text]; !dup {
				s.byText[text] = v.ID
			}
		}
		s.maxID = max(s.maxID, v.ID)
		vs := s.subjects[v.Subject]
		i, found := slices.BinarySearchFunc(vs, v.Version, func(e subjectVersion, t int) int { return e.version - t })
		if found {
			vs[i].id = v.ID
		} else {
			vs = slices.Insert(vs, i, subjectVersion{version: v.Version, id: v.ID})
		}
		s.subjects[v.Subject] = vs
	}
}

func (s *Server) removeVersion(subject string, version int) {
	vs := s.subjects[subject]
	vs = slices.DeleteFunc(vs, func(e subjectVersion) bool { return e.version == version })
	if len(vs) == 0 {
		delete(s.subjects, subject)
		return
	}
	s.subjects[subject] = vs
}

// compactJSON is the identity of a schema text: the same schema sent with
// other whitespace (srclient turns newlines into spaces) gets the same id.
func compactJSON(text string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(text)) != nil {
		return text
	}
	return b.String()
}

// stored is one schema of the registry, by id.
type stored struct {
	id   int
	text string // compact JSON
	avro avro.Schema
}

// subjectVersion is one version of a subject.
type subjectVersion struct {
	version int
	id      int
}
