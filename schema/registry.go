package schema

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/riferrei/srclient"
)

// Registry is what eddy needs from a Confluent-compatible schema registry.
// Client implements it over HTTP; tests and the embedded mode may give
// another implementation.
//
// Errors are classified: ErrUnknownSchema, ErrUnknownSubject,
// ErrIncompatible and ErrInvalidSchema are answers (retrying gives the same
// answer); anything wrapping ErrRegistryUnavailable is not an answer and
// may succeed later.
type Registry interface {
	// GetByID returns the schema with the given global id. Ids are
	// immutable, so the result may be cached forever. ErrUnknownSchema when
	// the registry has no such id; ErrInvalidSchema when it is not Avro.
	GetByID(ctx context.Context, id int) (*Schema, error)
	// Register registers schema under subject (idempotent: an identical
	// schema returns its existing id) and returns its id. ErrIncompatible
	// when the subject's compatibility level refuses it.
	Register(ctx context.Context, subject, schema string) (id int, err error)
	// Lookup returns the schema, with its id and version under subject,
	// when schema is registered under subject; ErrUnknownSchema or
	// ErrUnknownSubject when it is not.
	Lookup(ctx context.Context, subject, schema string) (*Schema, error)
	// Latest returns the latest version of subject; ErrUnknownSubject when
	// the subject has none.
	Latest(ctx context.Context, subject string) (*Schema, error)
	// Compatible reports whether schema could be registered under subject
	// as its next version (true for a subject with no versions).
	Compatible(ctx context.Context, subject, schema string) (bool, error)
}

// Schema is a registered Avro schema. Values returned by a Registry are
// shared and must not be modified.
type Schema struct {
	ID      int         // global id, the one in the wire format
	Subject string      // subject it was fetched under; "" from GetByID
	Version int         // version under Subject; 0 when unknown
	Text    string      // the schema as the registry returned it
	Avro    avro.Schema // Text parsed
}

// ParseSchema parses Avro schema text on its own: named types it defines
// are not shared with any other parse (hamba's package-level cache is not
// used, so two versions of a record with the same name never mix).
func ParseSchema(text string) (avro.Schema, error) {
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, err)
	}
	return s, nil
}

// Client is a Registry over HTTP using srclient, with a cache of parsed
// schemas by id (each id is fetched and parsed once; concurrent misses of
// one id share a request) and retries with backoff for outages.
//
// Every call is bounded by its context and by a per-attempt timeout.
// Failures that may pass (no answer, timeouts, HTTP 5xx, 408, 429) are
// retried up to the attempt limit, then returned wrapping
// ErrRegistryUnavailable; answers about the data (404 with Confluent codes
// 40401/40402/40403, 409, 422) are returned at once with their class.
type Client struct {
	url       string
	transport http.RoundTripper
	owned     *http.Transport // transport we made and close in Close
	user      string
	pass      string
	timeout   time.Duration
	attempts  int
	minWait   time.Duration
	maxWait   time.Duration

	mu   sync.Mutex
	byID map[int]*idEntry
}

type idEntry struct {
	done chan struct{} // closed when s/err are set
	s    *Schema
	err  error
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// ClientTransport sets the HTTP transport (TLS settings, proxies). Default:
// a clone of http.DefaultTransport owned by the Client and released by
// Close.
func ClientTransport(rt http.RoundTripper) ClientOption {
	return func(c *Client) { c.transport = rt }
}

// ClientBasicAuth sends HTTP basic credentials with every request. Default:
// none.
func ClientBasicAuth(user, password string) ClientOption {
	return func(c *Client) { c.user, c.pass = user, password }
}

// ClientTimeout bounds each HTTP attempt. Default 5s.
func ClientTimeout(d time.Duration) ClientOption {
	return func(c *Client) { c.timeout = d }
}

// ClientRetries sets how many attempts a call makes when the registry is
// unavailable (at least 1), waiting minWait after the first failure and
// doubling up to maxWait. Default 4 attempts, 100ms, 2s: a call gives up
// after 0.7s of waiting plus the attempts' own time (each bounded by
// ClientTimeout), so the caller (the processor pausing its partitions)
// sees an outage within seconds and retries the record itself.
func ClientRetries(attempts int, minWait, maxWait time.Duration) ClientOption {
	return func(c *Client) { c.attempts, c.minWait, c.maxWait = attempts, minWait, maxWait }
}

// NewClient returns a client of the registry at url (e.g.
// http://localhost:8081, or an Apicurio ccompat base such as
// http://host/apis/ccompat/v7).
func NewClient(url string, opts ...ClientOption) *Client {
	c := &Client{
		url:      strings.TrimRight(url, "/"),
		timeout:  5 * time.Second,
		attempts: 4,
		minWait:  100 * time.Millisecond,
		maxWait:  2 * time.Second,
		byID:     make(map[int]*idEntry),
	}
	for _, o := range opts {
		o(c)
	}
	if c.transport == nil {
		c.owned = http.DefaultTransport.(*http.Transport).Clone()
		c.transport = c.owned
	}
	if c.attempts < 1 {
		c.attempts = 1
	}
	return c
}

// Close releases the idle connections of the Client's own transport. The
// Client must not be used afterwards.
func (c *Client) Close() {
	if c.owned != nil {
		c.owned.CloseIdleConnections()
	}
}

var _ Registry = (*Client)(nil)

// GetByID implements Registry. Successful answers, and schemas that are
// not Avro, are cached forever; ErrUnknownSchema and outages are not.
func (c *Client) GetByID(ctx context.Context, id int) (*Schema, error) {
	c.mu.Lock()
	e, ok := c.byID[id]
	if !ok {
		e = &idEntry{done: make(chan struct{})}
		c.byID[id] = e
	}
	c.mu.Unlock()
	if ok {
		select {
		case <-e.done:
			return e.s, e.err
		case <-ctx.Done():
			return nil, c.ctxErr(fmt.Sprintf("get schema %d", id), ctx.Err())
		}
	}

	e.s, e.err = c.fetchByID(ctx, id)
	if e.err != nil && !errors.Is(e.err, ErrInvalidSchema) {
		c.mu.Lock()
		delete(c.byID, id) // the next call asks again
		c.mu.Unlock()
	}
	close(e.done)
	return e.s, e.err
}

func (c *Client) fetchByID(ctx context.Context, id int) (*Schema, error) {
	op := fmt.Sprintf("get schema %d", id)
	var got *srclient.Schema
	err := c.do(ctx, op, func(sr *srclient.SchemaRegistryClient) (err error) {
		got, err = sr.GetSchema(id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if t := got.SchemaType(); t != nil && *t != srclient.Avro && *t != "" {
		return nil, &RegistryError{Op: op, Class: ErrInvalidSchema, Message: fmt.Sprintf("schema %d is %s; eddy reads Avro", id, *t)}
	}
	parsed, err := ParseSchema(got.Schema())
	if err != nil {
		return nil, &RegistryError{Op: op, Class: ErrInvalidSchema, Err: err}
	}
	return &Schema{ID: id, Text: got.Schema(), Avro: parsed}, nil
}

// parsed returns the parsed schema of id if the cache has it with the same
// text, else parses text (without caching it: it was not fetched by id).
func (c *Client) parsed(id int, text string) (avro.Schema, error) {
	c.mu.Lock()
	e, ok := c.byID[id]
	c.mu.Unlock()
	if ok {
		select {
		case <-e.done:
			if e.err == nil && e.s.Text == text {
				return e.s.Avro, nil
			}
		default:
		}
	}
	return ParseSchema(text)
}

// Register implements Registry. The schema is parsed locally first, so an
// invalid schema fails without a round trip.
func (c *Client) Register(ctx context.Context, subject, schema string) (int, error) {
	op := fmt.Sprintf("register under %q", subject)
	if _, err := ParseSchema(schema); err != nil {
		return 0, &RegistryError{Op: op, Class: ErrInvalidSchema, Err: err}
	}
	var got *srclient.Schema
	err := c.do(ctx, op, func(sr *srclient.SchemaRegistryClient) (err error) {
		got, err = sr.CreateSchema(subject, schema, srclient.Avro)
		return err
	})
	if err != nil {
		return 0, err
	}
	return got.ID(), nil
}

// Lookup implements Registry.
func (c *Client) Lookup(ctx context.Context, subject, schema string) (*Schema, error) {
	op := fmt.Sprintf("look up schema under %q", subject)
	var got *srclient.Schema
	err := c.do(ctx, op, func(sr *srclient.SchemaRegistryClient) (err error) {
		got, err = sr.LookupSchema(subject, schema, srclient.Avro)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.fromSR(op, subject, got)
}

// Latest implements Registry.
func (c *Client) Latest(ctx context.Context, subject string) (*Schema, error) {
	op := fmt.Sprintf("get latest of %q", subject)
	var got *srclient.Schema
	err := c.do(ctx, op, func(sr *srclient.SchemaRegistryClient) (err error) {
		got, err = sr.GetLatestSchema(subject)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.fromSR(op, subject, got)
}

func (c *Client) fromSR(op, subject string, got *srclient.Schema) (*Schema, error) {
	if t := got.SchemaType(); t != nil && *t != srclient.Avro && *t != "" {
		return nil, &RegistryError{Op: op, Class: ErrInvalidSchema, Message: fmt.Sprintf("schema %d is %s; eddy reads Avro", got.ID(), *t)}
	}
	parsed, err := c.parsed(got.ID(), got.Schema())
	if err != nil {
		return nil, &RegistryError{Op: op, Class: ErrInvalidSchema, Err: err}
	}
	return &Schema{ID: got.ID(), Subject: subject, Version: got.Version(), Text: got.Schema(), Avro: parsed}, nil
}

// Compatible implements Registry.
func (c *Client) Compatible(ctx context.Context, subject, schema string) (bool, error) {
	op := fmt.Sprintf("check compatibility under %q", subject)
	var ok bool
	err := c.do(ctx, op, func(sr *srclient.SchemaRegistryClient) (err error) {
		ok, err = sr.IsSchemaCompatible(subject, schema, "latest", srclient.Avro)
		return err
	})
	if errors.Is(err, ErrUnknownSubject) || errors.Is(err, ErrUnknownVersion) {
		return true, nil // nothing to be compatible with
	}
	return ok, err
}

// do runs fn against a fresh srclient bound to one attempt's context,
// retrying outages with backoff. srclient v0.7.4 takes no context, so the
// context reaches the request through the transport; a srclient value is
// cheap (two maps), and its own caches are off: this Client caches.
func (c *Client) do(ctx context.Context, op string, fn func(*srclient.SchemaRegistryClient) error) error {
	wait := c.minWait
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.timeout)
		rt := &attemptTransport{ctx: actx, base: c.transport}
		sr := srclient.NewSchemaRegistryClient(c.url,
			srclient.WithClient(&http.Client{Transport: rt}),
			srclient.WithSemaphoreWeight(1))
		sr.CachingEnabled(false)
		if c.user != "" {
			sr.SetCredentials(c.user, c.pass)
		}
		err := fn(sr)
		cancel()
		if err == nil {
			return nil
		}
		rerr, retry := classify(op, rt.status, err)
		if !retry || attempt >= c.attempts {
			return rerr
		}
		if ctx.Err() != nil {
			return c.ctxErr(op, ctx.Err())
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return c.ctxErr(op, ctx.Err())
		}
		wait = min(2*wait, c.maxWait)
	}
}

func (c *Client) ctxErr(op string, err error) error {
	return &RegistryError{Op: op, Class: ErrRegistryUnavailable, Err: err}
}

// attemptTransport gives each request the attempt's context and remembers
// the HTTP status of the last response, which srclient does not surface
// when the body is not JSON.
type attemptTransport struct {
	ctx    context.Context
	base   http.RoundTripper
	status int
}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.status = 0
	resp, err := t.base.RoundTrip(req.WithContext(t.ctx))
	if resp != nil {
		t.status = resp.StatusCode
	}
	return resp, err
}

// Confluent error codes eddy tells apart.
const (
	codeSubjectNotFound     = 40401
	codeVersionNotFound     = 40402
	codeSchemaNotFound      = 40403
	codeSubjectConfigAbsent = 40408
	codeIncompatible        = 409
	codeInvalidSchema       = 42201
	codeInvalidVersion      = 42202
	codeInvalidLevel        = 42203
	codeInvalidMode         = 42204
	codeStoreError          = 50001
)

// classify turns a failed srclient call into a RegistryError and says
// whether trying again may help. Only a registry that answered in
// Confluent's terms can make a record bad (ErrUnknownSchema); everything
// that is not such an answer is ErrRegistryUnavailable.
func classify(op string, status int, err error) (*RegistryError, bool) {
	re := &RegistryError{Op: op, Status: status, Class: ErrRegistryUnavailable, Err: err}
	var se srclient.Error
	if errors.As(err, &se) {
		re.Code, re.Message = se.Code, se.Message
	}
	var cve *tls.CertificateVerificationError
	switch {
	case status == 0 && errors.As(err, &cve):
		// Not an outage: the same certificate fails the same way.
		re.Class = ErrRegistryAuth
		re.Message = "the registry's TLS certificate is not trusted (give its CA with --registry-ca-file): " + cve.Err.Error()
	case status == 0 || status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		return re, true // no answer, or the registry says it cannot answer now
	case status == http.StatusNotFound:
		switch re.Code {
		case codeSchemaNotFound:
			re.Class = ErrUnknownSchema
		case codeSubjectNotFound:
			re.Class = ErrUnknownSubject
		case codeVersionNotFound:
			re.Class = ErrUnknownVersion
		default:
			// A 404 that is not a registry's answer: a wrong URL or a proxy.
			// Dead-lettering on it would lose every record.
			if re.Message == "" {
				re.Message = "the URL answered 404 without a Confluent error code: is the registry URL right?"
			}
		}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		re.Class = ErrRegistryAuth
		if status == http.StatusUnauthorized {
			re.Message = "the registry wants credentials, or refused the ones given " +
				"(--registry-username-file/--registry-password-file or --registry-token-file)" + answered(re.Message)
		} else {
			re.Message = "the credentials are valid but may not do this (a read-only user registering?)" + answered(re.Message)
		}
	case status == http.StatusConflict:
		re.Class = ErrIncompatible
	case status == http.StatusUnprocessableEntity:
		re.Class = ErrInvalidSchema
	case status >= 200 && status < 300:
		// An answer srclient could not read: not the registry we expect.
		var je *json.SyntaxError
		if errors.As(err, &je) && re.Message == "" {
			re.Message = "the answer is not JSON: is the registry URL right?"
		}
	}
	return re, false
}

// answered appends the registry's own message, if any.
func answered(msg string) string {
	if msg == "" {
		return ""
	}
	return "; the registry says: " + msg
}
