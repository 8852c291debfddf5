package eddytest

import (
	"context"
	"fmt"
	"sync"

	"github.com/eddy-streams/eddy/schema"
)

// MemRegistry is a schema registry held in memory, for Avro pipelines run
// in process: the case's input schema and the output schemas eddy derives
// are registered in it. Every schema is compatible with every other (the
// kit checks pipelines, not schema evolution). Safe for concurrent use.
type MemRegistry struct {
	mu       sync.Mutex
	byID     []*schema.Schema            // id i+1
	subjects map[string][]*schema.Schema // versions, oldest first
}

// NewMemRegistry returns an empty registry.
func NewMemRegistry() *MemRegistry {
	return &MemRegistry{subjects: map[string][]*schema.Schema{}}
}

var _ schema.Registry = (*MemRegistry)(nil)

// GetByID implements schema.Registry.
func (r *MemRegistry) GetByID(_ context.Context, id int) (*schema.Schema, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id < 1 || id > len(r.byID) {
		return nil, fmt.Errorf("schema id %d: %w", id, schema.ErrUnknownSchema)
	}
	s := *r.byID[id-1]
	s.Subject, s.Version = "", 0
	return &s, nil
}

// Register implements schema.Registry.
func (r *MemRegistry) Register(_ context.Context, subject, text string) (int, error) {
	avro, err := schema.ParseSchema(text)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", schema.ErrInvalidSchema, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.subjects[subject] {
		if s.Avro.Fingerprint() == avro.Fingerprint() {
			return s.ID, nil
		}
	}
	id := 0
	for _, s := range r.byID {
		if s.Avro.Fingerprint() == avro.Fingerprint() {
			id = s.ID
		}
	}
	if id == 0 {
		r.byID = append(r.byID, &schema.Schema{ID: len(r.byID) + 1, Text: text, Avro: avro})
		id = len(r.byID)
	}
	r.subjects[subject] = append(r.subjects[subject], &schema.Schema{ID: id, Subject: subject,
		Version: len(r.subjects[subject]) + 1, Text: text, Avro: avro})
	return id, nil
}

// Lookup implements schema.Registry.
func (r *MemRegistry) Lookup(_ context.Context, subject, text string) (*schema.Schema, error) {
	avro, err := schema.ParseSchema(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", schema.ErrInvalidSchema, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	vs, ok := r.subjects[subject]
	if !ok {
		return nil, fmt.Errorf("subject %s: %w", subject, schema.ErrUnknownSubject)
	}
	for _, s := range vs {
		if s.Avro.Fingerprint() == avro.Fingerprint() {
			return s, nil
		}
	}
	return nil, fmt.Errorf("subject %s: %w", subject, schema.ErrUnknownSchema)
}

// Latest implements schema.Registry.
func (r *MemRegistry) Latest(_ context.Context, subject string) (*schema.Schema, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vs := r.subjects[subject]
	if len(vs) == 0 {
		return nil, fmt.Errorf("subject %s: %w", subject, schema.ErrUnknownSubject)
	}
	return vs[len(vs)-1], nil
}

// Compatible implements schema.Registry: always true.
func (r *MemRegistry) Compatible(context.Context, string, string) (bool, error) { return true, nil }
