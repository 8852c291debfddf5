package schema

// The schema registry eddy serves (`eddy registry`, the demo's): the
// Confluent REST API on a Kafka topic. (Long: one handler per endpoint of
// that API, which must behave as Confluent's do.)

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultTopic is the topic of the embedded registry, as Confluent's.
const DefaultTopic = "_schemas"

// ContentType is the media type of the registry's answers.
const ContentType = "application/vnd.schemaregistry.v1+json"

// Server is eddy's own Confluent-compatible schema registry for the
// embedded mode: an http.Handler serving the part of the REST API that
// srclient, Confluent serializers and `eddy schema` use, with its state in
// a compacted Kafka topic (see store.go) so schemas survive restarts
// exactly like the records that reference them.
//
// Served (Avro only; schema references are refused):
//
//	POST /subjects/{subject}/versions                    register → {"id":N}; idempotent
//	POST /subjects/{subject}                             look up a schema under a subject
//	GET  /subjects                                       subject names
//	GET  /subjects/{subject}/versions                    version numbers
//	GET  /subjects/{subject}/versions/{version}          version or "latest" (or -1)
//	GET  /subjects/{subject}/versions/{version}/schema   the schema text alone
//	GET  /schemas/ids/{id}                               {"schema":"..."}
//	GET  /schemas/ids/{id}/schema                        the schema text alone
//	GET  /schemas/ids/{id}/versions                      [{"subject":..,"version":..}]
//	GET  /schemas/ids/{id}/subjects                      ["subject", ...]
//	GET  /schemas                                        [{"subject":..,"version":..,"id":..,"schema":..}]
//	                                                     (?subjectPrefix=, ?latestOnly=true, ?offset=, ?limit=)
//	GET  /schemas/types                                  ["AVRO"]
//	GET  /mode, GET /mode/{subject}                      {"mode":"READWRITE"}, the only mode (PUT of another: 42204)
//	POST /compatibility/subjects/{subject}/versions/{version}   ?verbose=true adds messages
//	POST /compatibility/subjects/{subject}/versions             against what registering would check
//	GET  /config, PUT /config                            registry compatibility level
//	GET  /config/{subject}, PUT /config/{subject}        subject level (GET: ?defaultToGlobal=true)
//
// Not served: DELETE (subjects, versions, configs: answered 405), modes
// other than READWRITE, contexts, exporters, schema types other than Avro.
//
// Errors are Confluent's: 40401 subject not found, 40402 version not found,
// 40403 schema not found, 40408 subject has no level of its own (404);
// 409 incompatible; 42201 invalid schema, 42202 invalid version, 42203
// invalid compatibility level, 42204 invalid mode (422); 50001 store error (500).
type Server struct {
	cl    *kgo.Client
	adm   *kadm.Client
	topic string
	mux   *http.ServeMux

	// writeMu serialises changes: catch up, decide, produce, apply. next
	// is the next offset of the topic to apply; it is guarded by writeMu.
	writeMu sync.Mutex
	next    int64

	mu       sync.RWMutex
	schemas  map[int]*stored
	byText   map[string]int              // compact text → id
	subjects map[string][]subjectVersion // ascending versions
	levels   map[string]string           // subject → level
	global   string                      // "" = DefaultLevel
	maxID    int
}

// NewServer ensures the registry topic exists (compacted, one partition),
// reads it to its end and returns a Server ready to serve. It does not
// return before it has read everything, so a registry that answers has
// all its schemas.
//
// cl must be a client dedicated to the registry: the server produces to
// and consumes the topic through it (AddConsumePartitions), so it must not
// be a group consumer nor consume other topics, and it must produce with
// acks=all (franz-go's default). The caller closes cl after it stops
// serving. The server starts no goroutines and needs no Close.
func NewServer(ctx context.Context, cl *kgo.Client, topic string) (*Server, error) {
	if topic == "" {
		topic = DefaultTopic
	}
	if g, _ := cl.OptValue(kgo.ConsumerGroup).(string); g != "" {
		return nil, fmt.Errorf("schema registry: the Kafka client is a member of group %q: give the registry a client of its own", g)
	}
	if ts, _ := cl.OptValue(kgo.ConsumeTopics).([]string); len(ts) > 0 {
		return nil, fmt.Errorf("schema registry: the Kafka client consumes %v: give the registry a client of its own", ts)
	}
	if acks, ok := cl.OptValue(kgo.RequiredAcks).(kgo.Acks); ok && acks != kgo.AllISRAcks() {
		return nil, errors.New("schema registry: the Kafka client must produce with acks=all, or an acknowledged schema could be lost")
	}
	s := &Server{
		cl:       cl,
		adm:      kadm.NewClient(cl),
		topic:    topic,
		schemas:  make(map[int]*stored),
		byText:   make(map[string]int),
		subjects: make(map[string][]subjectVersion),
		levels:   make(map[string]string),
	}
	if err := ensureTopic(ctx, s.adm, topic); err != nil {
		return nil, err
	}
	if err := s.catchUp(ctx); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Topic returns the topic the server stores its state in.
func (s *Server) Topic() string { return s.topic }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /subjects/{subject}/versions", s.handleRegister)
	m.HandleFunc("POST /subjects/{subject}", s.handleLookup)
	m.HandleFunc("GET /subjects", s.handleSubjects)
	m.HandleFunc("GET /subjects/{subject}/versions", s.handleVersions)
	m.HandleFunc("GET /subjects/{subject}/versions/{version}", s.handleVersion)
	m.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", s.handleVersion)
	m.HandleFunc("GET /schemas/ids/{id}", s.handleID)
	m.HandleFunc("GET /schemas/ids/{id}/schema", s.handleID)
	m.HandleFunc("GET /schemas/ids/{id}/versions", s.handleIDVersions)
	m.HandleFunc("GET /schemas/ids/{id}/subjects", s.handleIDSubjects)
	m.HandleFunc("GET /schemas", s.handleSchemas)
	m.HandleFunc("GET /mode", s.handleMode)
	m.HandleFunc("GET /mode/{subject}", s.handleMode)
	m.HandleFunc("PUT /mode", s.handlePutMode)
	m.HandleFunc("PUT /mode/{subject}", s.handlePutMode)
	m.HandleFunc("GET /schemas/types", func(w http.ResponseWriter, _ *http.Request) { reply(w, http.StatusOK, []string{"AVRO"}) })
	m.HandleFunc("POST /compatibility/subjects/{subject}/versions/{version}", s.handleCompat)
	m.HandleFunc("POST /compatibility/subjects/{subject}/versions", s.handleCompat)
	m.HandleFunc("GET /config", s.handleGetConfig)
	m.HandleFunc("PUT /config", s.handlePutConfig)
	m.HandleFunc("GET /config/{subject}", s.handleGetConfig)
	m.HandleFunc("PUT /config/{subject}", s.handlePutConfig)
	m.HandleFunc("DELETE /", func(w http.ResponseWriter, _ *http.Request) {
		replyErr(w, &apiError{http.StatusMethodNotAllowed, http.StatusMethodNotAllowed, "eddy's registry does not delete: schemas are kept for the records that reference them"})
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && r.Method == http.MethodGet {
			reply(w, http.StatusOK, struct{}{})
			return
		}
		replyErr(w, &apiError{http.StatusNotFound, http.StatusNotFound, "HTTP 404 Not Found"})
	})
	s.mux = m
}

// apiError is an answer in Confluent's error format.
type apiError struct {
	status int
	code   int
	msg    string
}

func errSubjectNotFound(subject string) *apiError {
	return &apiError{http.StatusNotFound, codeSubjectNotFound, fmt.Sprintf("Subject '%s' not found.", subject)}
}

func errVersionNotFound(subject string, v int) *apiError {
	return &apiError{http.StatusNotFound, codeVersionNotFound, fmt.Sprintf("Version %d not found for subject '%s'.", v, subject)}
}

func errSchemaNotFound(what string) *apiError {
	return &apiError{http.StatusNotFound, codeSchemaNotFound, what + " not found."}
}

func errInvalidSchema(err error) *apiError {
	return &apiError{http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: " + err.Error()}
}

func errStore(err error) *apiError {
	return &apiError{http.StatusInternalServerError, codeStoreError, "Error in the backend data store: " + err.Error()}
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func replyErr(w http.ResponseWriter, e *apiError) {
	reply(w, e.status, struct {
		Code    int    `json:"error_code"`
		Message string `json:"message"`
	}{e.code, e.msg})
}

// maxBody bounds request bodies: schemas are small.
const maxBody = 8 << 20

// schemaRequest is the body of register, lookup and compatibility calls.
type schemaRequest struct {
	Schema     string            `json:"schema"`
	SchemaType string            `json:"schemaType"`
	References []json.RawMessage `json:"references"`
}

// readSchema reads and parses a schema request.
func readSchema(w http.ResponseWriter, r *http.Request) (*stored, *apiError) {
	var req schemaRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		return nil, &apiError{http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, "Unrecognized request body: " + err.Error()}
	}
	if req.SchemaType != "" && req.SchemaType != "AVRO" {
		return nil, errInvalidSchema(fmt.Errorf("schema type %s is not supported: eddy's registry stores Avro", req.SchemaType))
	}
	if len(req.References) > 0 {
		return nil, errInvalidSchema(errors.New("schema references are not supported by eddy's registry"))
	}
	if strings.TrimSpace(req.Schema) == "" {
		return nil, errInvalidSchema(errors.New("the schema is empty"))
	}
	parsed, err := ParseSchema(req.Schema)
	if err != nil {
		return nil, errInvalidSchema(err)
	}
	return &stored{text: compactJSON(req.Schema), avro: parsed}, nil
}

// level returns the effective level of subject. The caller holds mu.
func (s *Server) level(subject string) string {
	if l := s.levels[subject]; l != "" {
		return l
	}
	if s.global != "" {
		return s.global
	}
	return DefaultLevel
}

// earlier returns the versions of subject for a compatibility check. The
// caller holds mu.
func (s *Server) earlier(subject string) []versioned {
	var out []versioned
	for _, v := range s.subjects[subject] {
		out = append(out, versioned{version: v.version, avro: s.schemas[v.id].avro})
	}
	return out
}

// find returns the version of subject whose schema is text. The caller
// holds mu.
func (s *Server) find(subject, text string) (subjectVersion, bool) {
	id, ok := s.byText[text]
	if !ok {
		return subjectVersion{}, false
	}
	for _, v := range s.subjects[subject] {
		if v.id == id {
			return v, true
		}
	}
	return subjectVersion{}, false
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	cand, aerr := readSchema(w, r)
	if aerr != nil {
		replyErr(w, aerr)
		return
	}
	id, aerr := s.register(r.Context(), subject, cand)
	if aerr != nil {
		replyErr(w, aerr)
		return
	}
	reply(w, http.StatusOK, struct {
		ID int `json:"id"`
	}{id})
}

// register adds cand as the next version of subject, or returns the id it
// already has there.
func (s *Server) register(ctx context.Context, subject string, cand *stored) (int, *apiError) {
	s.mu.RLock()
	v, ok := s.find(subject, cand.text)
	s.mu.RUnlock()
	if ok {
		return v.id, nil // fast path: no write, no catch-up
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.catchUp(ctx); err != nil {
		return 0, errStore(err)
	}
	s.mu.RLock()
	v, ok = s.find(subject, cand.text)
	level := s.level(subject)
	earlier := s.earlier(subject)
	id, known := s.byText[cand.text]
	if !known {
		id = s.maxID + 1
	}
	version := 1
	if vs := s.subjects[subject]; len(vs) > 0 {
		version = vs[len(vs)-1].version + 1
	}
	s.mu.RUnlock()
	if ok {
		return v.id, nil
	}
	if msgs := checkCompat(level, cand.avro, earlier); len(msgs) > 0 {
		return 0, &apiError{http.StatusConflict, codeIncompatible, fmt.Sprintf(
			"Schema being registered is incompatible with an earlier schema for subject %q (compatibility %s): %s",
			subject, level, strings.Join(msgs, "; "))}
	}
	key := storeKey{KeyType: keySchema, Subject: &subject, Version: version, Magic: 1}
	val := storeSchema{Subject: subject, Version: version, ID: id, Schema: cand.text}
	if err := s.write(ctx, key, val); err != nil {
		return 0, errStore(err)
	}
	return id, nil
}

// versionResponse is a subject's version, as Confluent returns it.
type versionResponse struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
}

func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	cand, aerr := readSchema(w, r)
	if aerr != nil {
		replyErr(w, aerr)
		return
	}
	s.mu.RLock()
	_, exists := s.subjects[subject]
	v, ok := s.find(subject, cand.text)
	s.mu.RUnlock()
	switch {
	case !exists:
		replyErr(w, errSubjectNotFound(subject))
	case !ok:
		replyErr(w, errSchemaNotFound("Schema"))
	default:
		reply(w, http.StatusOK, versionResponse{subject, v.version, v.id, cand.text})
	}
}

func (s *Server) handleSubjects(w http.ResponseWriter, _ *http.Request) {
	s.mu.RLock()
	out := make([]string, 0, len(s.subjects))
	for name := range s.subjects {
		out = append(out, name)
	}
	s.mu.RUnlock()
	slices.Sort(out)
	reply(w, http.StatusOK, out)
}

func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	s.mu.RLock()
	vs, ok := s.subjects[subject]
	out := make([]int, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.version)
	}
	s.mu.RUnlock()
	if !ok {
		replyErr(w, errSubjectNotFound(subject))
		return
	}
	reply(w, http.StatusOK, out)
}

// parseVersion reads a version path value: a positive number, or "latest"
// or -1 for the latest (returned as -1).
func parseVersion(v string) (int, *apiError) {
	if v == "latest" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n == 0 || n < -1 || n > 1<<31-1 {
		return 0, &apiError{http.StatusUnprocessableEntity, codeInvalidVersion,
			fmt.Sprintf("The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", v)}
	}
	return n, nil
}

// version finds a version of subject (-1: the latest). The caller holds mu.
func (s *Server) version(subject string, n int) (subjectVersion, *apiError) {
	vs, ok := s.subjects[subject]
	if !ok || len(vs) == 0 {
		return subjectVersion{}, errSubjectNotFound(subject)
	}
	if n == -1 {
		return vs[len(vs)-1], nil
	}
	i, found := slices.BinarySearchFunc(vs, n, func(e subjectVersion, t int) int { return e.version - t })
	if !found {
		return subjectVersion{}, errVersionNotFound(subject, n)
	}
	return vs[i], nil
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	n, aerr := parseVersion(r.PathValue("version"))
	if aerr != nil {
		replyErr(w, aerr)
		return
	}
	s.mu.RLock()
	v, aerr := s.version(subject, n)
	var text string
	if aerr == nil {
		text = s.schemas[v.id].text
	}
	s.mu.RUnlock()
	switch {
	case aerr != nil:
		replyErr(w, aerr)
	case strings.HasSuffix(r.URL.Path, "/schema"):
		replyRaw(w, text)
	default:
		reply(w, http.StatusOK, versionResponse{subject, v.version, v.id, text})
	}
}

// replyRaw answers with the schema text itself (it is JSON).
func replyRaw(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, text)
}

func (s *Server) handleID(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := strconv.Atoi(raw)
	s.mu.RLock()
	st, ok := s.schemas[id]
	s.mu.RUnlock()
	if err != nil || !ok {
		replyErr(w, errSchemaNotFound(fmt.Sprintf("Schema %s", raw)))
		return
	}
	if strings.HasSuffix(r.URL.Path, "/schema") {
		replyRaw(w, st.text)
		return
	}
	reply(w, http.StatusOK, struct {
		Schema string `json:"schema"`
	}{st.text})
}

func (s *Server) handleIDVersions(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := strconv.Atoi(raw)
	type pair struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	var out []pair
	s.mu.RLock()
	_, ok := s.schemas[id]
	for name, vs := range s.subjects {
		for _, v := range vs {
			if v.id == id {
				out = append(out, pair{name, v.version})
			}
		}
	}
	s.mu.RUnlock()
	if err != nil || !ok {
		replyErr(w, errSchemaNotFound(fmt.Sprintf("Schema %s", raw)))
		return
	}
	slices.SortFunc(out, func(a, b pair) int {
		if c := strings.Compare(a.Subject, b.Subject); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	reply(w, http.StatusOK, out)
}

// handleIDSubjects answers the subjects that have a version with schema
// id, sorted (Confluent: GET /schemas/ids/{id}/subjects).
func (s *Server) handleIDSubjects(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := strconv.Atoi(raw)
	out := []string{}
	s.mu.RLock()
	_, ok := s.schemas[id]
	for name, vs := range s.subjects {
		if slices.ContainsFunc(vs, func(v subjectVersion) bool { return v.id == id }) {
			out = append(out, name)
		}
	}
	s.mu.RUnlock()
	if err != nil || !ok {
		replyErr(w, errSchemaNotFound(fmt.Sprintf("Schema %s", raw)))
		return
	}
	slices.Sort(out)
	reply(w, http.StatusOK, out)
}

// handleSchemas lists every subject version with its schema, by subject
// then version (Confluent: GET /schemas). subjectPrefix keeps the subjects
// that start with it, latestOnly=true keeps each subject's latest version,
// offset and limit page through the list (limit -1 or absent: no limit).
// deleted is accepted and ignored: nothing is ever deleted.
func (s *Server) handleSchemas(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix, latestOnly := q.Get("subjectPrefix"), q.Get("latestOnly") == "true"
	offset, limit := 0, -1
	for name, dst := range map[string]*int{"offset": &offset, "limit": &limit} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < -1 || name == "offset" && n < 0 {
				replyErr(w, &apiError{http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, fmt.Sprintf("%s %q is not a valid number", name, v)})
				return
			}
			*dst = n
		}
	}
	out := []versionResponse{}
	s.mu.RLock()
	for name, vs := range s.subjects {
		if !strings.HasPrefix(name, prefix) || len(vs) == 0 {
			continue
		}
		if latestOnly {
			vs = vs[len(vs)-1:]
		}
		for _, v := range vs {
			out = append(out, versionResponse{name, v.version, v.id, s.schemas[v.id].text})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b versionResponse) int {
		if c := strings.Compare(a.Subject, b.Subject); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	out = out[min(offset, len(out)):]
	if limit >= 0 && limit < len(out) {
		out = out[:limit]
	}
	reply(w, http.StatusOK, out)
}

// modeReadWrite is the one mode of eddy's registry: it always accepts
// registrations (no READONLY, no IMPORT).
const modeReadWrite = "READWRITE"

// handleMode answers the registry's mode, or a subject's: always
// READWRITE. Tools and UIs probe it before writing. A subject the registry
// does not know is 40401, unless defaultToGlobal=true.
func (s *Server) handleMode(w http.ResponseWriter, r *http.Request) {
	if subject := r.PathValue("subject"); subject != "" && r.URL.Query().Get("defaultToGlobal") != "true" {
		s.mu.RLock()
		_, ok := s.subjects[subject]
		s.mu.RUnlock()
		if !ok {
			replyErr(w, errSubjectNotFound(subject))
			return
		}
	}
	reply(w, http.StatusOK, struct {
		Mode string `json:"mode"`
	}{modeReadWrite})
}

// handlePutMode accepts READWRITE (a no-op) and refuses other modes with
// Confluent's 42204 (invalid mode).
func (s *Server) handlePutMode(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Mode string `json:"mode"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		replyErr(w, &apiError{http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, "Unrecognized request body: " + err.Error()})
		return
	}
	if req.Mode != modeReadWrite {
		replyErr(w, &apiError{http.StatusUnprocessableEntity, codeInvalidMode,
			fmt.Sprintf("Invalid mode %q: eddy's registry is always READWRITE", req.Mode)})
		return
	}
	reply(w, http.StatusOK, req)
}

// handleCompat answers whether a schema is compatible with one version of
// a subject (under the subject's level, in that level's direction), or,
// without a version or with "latest", with what registering it would check
// (every earlier version for the transitive levels). A subject with no
// versions is compatible with anything when no version is named.
func (s *Server) handleCompat(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	raw := r.PathValue("version")
	n := -1
	if raw != "" {
		var aerr *apiError
		if n, aerr = parseVersion(raw); aerr != nil {
			replyErr(w, aerr)
			return
		}
	}
	cand, aerr := readSchema(w, r)
	if aerr != nil {
		replyErr(w, aerr)
		return
	}
	s.mu.RLock()
	level := s.level(subject)
	earlier := s.earlier(subject)
	if raw != "" {
		var v subjectVersion
		if v, aerr = s.version(subject, n); aerr == nil && n != -1 {
			earlier = []versioned{{version: v.version, avro: s.schemas[v.id].avro}}
		}
	}
	s.mu.RUnlock()
	if aerr != nil {
		replyErr(w, aerr)
		return
	}
	msgs := checkCompat(level, cand.avro, earlier)
	resp := struct {
		IsCompatible bool      `json:"is_compatible"`
		Messages     *[]string `json:"messages,omitempty"` // only when verbose, then always
	}{IsCompatible: len(msgs) == 0}
	if v, _ := strconv.ParseBool(r.URL.Query().Get("verbose")); v {
		if msgs == nil {
			msgs = []string{}
		}
		resp.Messages = &msgs
	}
	reply(w, http.StatusOK, resp)
}

func (s *Server) handleGetConfig(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	s.mu.RLock()
	global := s.global
	l, own := s.levels[subject]
	s.mu.RUnlock()
	if global == "" {
		global = DefaultLevel
	}
	switch {
	case subject == "":
		l = global
	case !own:
		if v, _ := strconv.ParseBool(r.URL.Query().Get("defaultToGlobal")); !v {
			replyErr(w, &apiError{http.StatusNotFound, codeSubjectConfigAbsent,
				fmt.Sprintf("Subject '%s' does not have subject-level compatibility configured", subject)})
			return
		}
		l = global
	}
	reply(w, http.StatusOK, struct {
		Level string `json:"compatibilityLevel"`
	}{l})
}

func (s *Server) handlePutConfig(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Compatibility string `json:"compatibility"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		replyErr(w, &apiError{http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, "Unrecognized request body: " + err.Error()})
		return
	}
	level := strings.ToUpper(req.Compatibility)
	if !validLevel(level) {
		replyErr(w, &apiError{http.StatusUnprocessableEntity, codeInvalidLevel, fmt.Sprintf(
			"Invalid compatibility level %q: use one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE", req.Compatibility)})
		return
	}
	key := storeKey{KeyType: keyConfig, Magic: 0}
	if subject := r.PathValue("subject"); subject != "" {
		key.Subject = &subject
	}
	s.writeMu.Lock()
	err := s.catchUp(r.Context())
	if err == nil {
		err = s.write(r.Context(), key, storeConfig{CompatibilityLevel: level})
	}
	s.writeMu.Unlock()
	if err != nil {
		replyErr(w, errStore(err))
		return
	}
	reply(w, http.StatusOK, struct {
		Compatibility string `json:"compatibility"`
	}{level})
}
