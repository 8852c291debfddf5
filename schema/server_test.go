package schema

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/riferrei/srclient"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestServerWithSrclient(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	sr := srclient.NewSchemaRegistryClient(base)
	sr.CachingEnabled(false)

	// Register, and register again: the same id, no new version.
	s1, err := sr.CreateSchema("requests-value", schemaV1, srclient.Avro)
	if err != nil {
		t.Fatal(err)
	}
	if s1.ID() != 1 {
		t.Errorf("first id = %d, want 1", s1.ID())
	}
	again, err := sr.CreateSchema("requests-value", schemaV1, srclient.Avro)
	if err != nil || again.ID() != s1.ID() {
		t.Fatalf("re-register: id %v err %v, want id %d", again, err, s1.ID())
	}
	versions, err := sr.GetSchemaVersions("requests-value")
	if err != nil || !reflect.DeepEqual(versions, []int{1}) {
		t.Fatalf("versions = %v %v, want [1]", versions, err)
	}

	// Get by id.
	got, err := sr.GetSchema(s1.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.Schema() != compactJSON(schemaV1) {
		t.Errorf("schema by id = %s", got.Schema())
	}

	// A compatible evolution under the default BACKWARD level.
	if ok, err := sr.IsSchemaCompatible("requests-value", schemaV2, "latest", srclient.Avro); err != nil || !ok {
		t.Fatalf("v2 compatible = %v %v, want true", ok, err)
	}
	s2, err := sr.CreateSchema("requests-value", schemaV2, srclient.Avro)
	if err != nil {
		t.Fatal(err)
	}
	if s2.ID() != 2 {
		t.Errorf("v2: id %d, want 2", s2.ID())
	}
	latest, err := sr.GetLatestSchema("requests-value")
	if err != nil || latest.ID() != 2 || latest.Version() != 2 {
		t.Fatalf("latest = %+v %v", latest, err)
	}
	v1, err := sr.GetSchemaByVersion("requests-value", 1)
	if err != nil || v1.ID() != 1 {
		t.Fatalf("version 1 = %+v %v", v1, err)
	}

	// Incompatible changes are refused with 409 and say why.
	for name, bad := range map[string]string{"field without default": schemaNoDefault, "changed type": schemaRetyped} {
		ok, err := sr.IsSchemaCompatible("requests-value", bad, "latest", srclient.Avro)
		if err != nil || ok {
			t.Errorf("%s: compatible = %v %v, want false", name, ok, err)
		}
		_, err = sr.CreateSchema("requests-value", bad, srclient.Avro)
		var se srclient.Error
		if !errors.As(err, &se) || se.Code != 409 {
			t.Fatalf("%s: register error = %v, want error_code 409", name, err)
		}
		if !strings.Contains(se.Message, "cannot read data written with version 2") {
			t.Errorf("%s: message %q does not say which version it breaks", name, se.Message)
		}
		t.Logf("%s: %s", name, se.Message)
	}

	// The same schema under another subject keeps its id; subjects list.
	other, err := sr.CreateSchema("other-value", schemaV1, srclient.Avro)
	if err != nil || other.ID() != 1 {
		t.Fatalf("same schema, other subject: %+v %v, want id 1", other, err)
	}
	subjects, err := sr.GetSubjects()
	if err != nil || !reflect.DeepEqual(subjects, []string{"other-value", "requests-value"}) {
		t.Fatalf("subjects = %v %v", subjects, err)
	}
	pairs, err := sr.GetSubjectVersionsById(1)
	if err != nil || len(pairs) != 2 {
		t.Fatalf("subjects of id 1 = %v %v", pairs, err)
	}

	// Lookup.
	found, err := sr.LookupSchema("requests-value", schemaV2, srclient.Avro)
	if err != nil || found.ID() != 2 || found.Version() != 2 {
		t.Fatalf("lookup v2 = %+v %v", found, err)
	}
	if _, err := sr.LookupSchema("other-value", schemaV2, srclient.Avro); !isCode(err, 40403) {
		t.Errorf("lookup of a schema not under the subject: %v, want 40403", err)
	}

	// Config: registry and subject levels.
	lvl, err := sr.GetGlobalCompatibilityLevel()
	if err != nil || *lvl != srclient.Backward {
		t.Fatalf("global level = %v %v", lvl, err)
	}
	if _, err := sr.GetCompatibilityLevel("requests-value", false); !isCode(err, 40408) {
		t.Errorf("subject level not set: %v, want 40408", err)
	}
	if lvl, err := sr.GetCompatibilityLevel("requests-value", true); err != nil || *lvl != srclient.Backward {
		t.Errorf("subject level defaulting to global = %v %v", lvl, err)
	}
	if _, err := sr.ChangeSubjectCompatibilityLevel("requests-value", srclient.None); err != nil {
		t.Fatal(err)
	}
	if lvl, err := sr.GetCompatibilityLevel("requests-value", false); err != nil || *lvl != srclient.None {
		t.Fatalf("subject level = %v %v, want NONE", lvl, err)
	}
	if _, err := sr.CreateSchema("requests-value", schemaRetyped, srclient.Avro); err != nil {
		t.Fatalf("under NONE anything goes: %v", err)
	}
	if versions, err := sr.GetSchemaVersions("requests-value"); err != nil || len(versions) != 3 {
		t.Fatalf("versions = %v %v, want 3 of them", versions, err)
	}
	// Other subjects keep the registry level.
	if _, err := sr.CreateSchema("other-value", schemaRetyped, srclient.Avro); !isCode(err, 409) {
		t.Errorf("other subject still BACKWARD: %v, want 409", err)
	}
}

func isCode(err error, code int) bool {
	var se srclient.Error
	return errors.As(err, &se) && se.Code == code
}

func TestServerLevels(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	reg := func(subject, schema string) (int, apiErr) {
		var out struct {
			ID int `json:"id"`
			apiErr
		}
		status, _ := call(t, "POST", base+"/subjects/"+subject+"/versions", map[string]string{"schema": schema}, &out)
		if status != http.StatusOK && out.Code == 0 {
			t.Fatalf("status %d without error_code", status)
		}
		return out.ID, out.apiErr
	}
	put := func(subject, level string) {
		var out struct{ Compatibility string }
		if st, b := call(t, "PUT", base+"/config/"+subject, map[string]string{"compatibility": level}, &out); st != 200 || out.Compatibility != level {
			t.Fatalf("PUT config %s: %d %s", level, st, b)
		}
	}

	// Adding a field without a default: old readers ignore the new field
	// (FORWARD accepts), new readers miss it in old data (BACKWARD and FULL
	// refuse).
	put("fwd", LevelForward)
	if _, e := reg("fwd", schemaV1); e.Code != 0 {
		t.Fatal(e)
	}
	if _, e := reg("fwd", schemaNoDefault); e.Code != 0 {
		t.Fatalf("FORWARD refused a field added without default: %v", e)
	}
	put("bwd", LevelBackward)
	reg("bwd", schemaV1)
	if _, e := reg("bwd", schemaNoDefault); e.Code != 409 {
		t.Fatalf("BACKWARD accepted a field added without default: %v", e)
	}
	put("full", LevelFull)
	reg("full", schemaV1)
	if _, e := reg("full", schemaNoDefault); e.Code != 409 {
		t.Fatalf("FULL accepted a field added without default: %v", e)
	}
	if _, e := reg("full", schemaV2); e.Code != 0 {
		t.Fatalf("FULL refused a field added with a default: %v", e)
	}

	// Transitive: v1 {a}, v2 {a, b default}, v3 {a, b (no default)}:
	// v3 reads v2 data (b is there) but not v1 data.
	const (
		a   = `{"type":"record","name":"T","fields":[{"name":"a","type":"int"}]}`
		ab  = `{"type":"record","name":"T","fields":[{"name":"a","type":"int"},{"name":"b","type":"int","default":0}]}`
		abN = `{"type":"record","name":"T","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}`
	)
	for _, subject := range []string{"bt", "b"} {
		put(subject, map[string]string{"bt": LevelBackwardTransitive, "b": LevelBackward}[subject])
		reg(subject, a)
		reg(subject, ab)
	}
	if _, e := reg("b", abN); e.Code != 0 {
		t.Errorf("BACKWARD checks the latest only, but refused: %v", e)
	}
	if _, e := reg("bt", abN); e.Code != 409 || !strings.Contains(e.Message, "version 1") {
		t.Errorf("BACKWARD_TRANSITIVE accepted (or did not name version 1): %v", e)
	}

	// Verbose compatibility check names the failure.
	var cr struct {
		IsCompatible bool     `json:"is_compatible"`
		Messages     []string `json:"messages"`
	}
	call(t, "POST", base+"/compatibility/subjects/bt/versions/latest?verbose=true", map[string]string{"schema": abN}, &cr)
	if cr.IsCompatible || len(cr.Messages) != 1 || !strings.Contains(cr.Messages[0], "reader field b is missing") {
		t.Errorf("verbose check against latest (transitive) = %+v", cr)
	}
	cr.Messages = nil
	call(t, "POST", base+"/compatibility/subjects/bt/versions/2?verbose=true", map[string]string{"schema": abN}, &cr)
	if !cr.IsCompatible || cr.Messages == nil {
		t.Errorf("verbose check against version 2 = %+v, want compatible with empty messages", cr)
	}
	cr.Messages = nil
	call(t, "POST", base+"/compatibility/subjects/bt/versions/1", map[string]string{"schema": abN}, &cr)
	if cr.IsCompatible || cr.Messages != nil {
		t.Errorf("check against version 1 = %+v, want incompatible without messages", cr)
	}
	call(t, "POST", base+"/compatibility/subjects/new-subject/versions", map[string]string{"schema": abN}, &cr)
	if !cr.IsCompatible {
		t.Errorf("a subject with no versions is compatible with anything: %+v", cr)
	}

	// Registry level.
	var gl struct{ CompatibilityLevel string }
	if st, b := call(t, "PUT", base+"/config", map[string]string{"compatibility": "FULL_TRANSITIVE"}, nil); st != 200 {
		t.Fatalf("PUT /config: %d %s", st, b)
	}
	call(t, "GET", base+"/config", nil, &gl)
	if gl.CompatibilityLevel != LevelFullTransitive {
		t.Errorf("global level = %q", gl.CompatibilityLevel)
	}
	call(t, "GET", base+"/config/new-subject?defaultToGlobal=true", nil, &gl)
	if gl.CompatibilityLevel != LevelFullTransitive {
		t.Errorf("subject level defaulting to global = %q", gl.CompatibilityLevel)
	}
}

func TestServerErrorCodes(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	call(t, "POST", base+"/subjects/s/versions", map[string]string{"schema": schemaV1}, nil)
	v1 := map[string]string{"schema": schemaV1}

	wantErr(t, "GET", base+"/subjects/nope/versions", nil, 404, 40401)
	wantErr(t, "GET", base+"/subjects/nope/versions/1", nil, 404, 40401)
	wantErr(t, "GET", base+"/subjects/nope/versions/latest", nil, 404, 40401)
	wantErr(t, "POST", base+"/subjects/nope", v1, 404, 40401)
	wantErr(t, "POST", base+"/compatibility/subjects/nope/versions/latest", v1, 404, 40401)
	wantErr(t, "GET", base+"/subjects/s/versions/7", nil, 404, 40402)
	wantErr(t, "POST", base+"/compatibility/subjects/s/versions/7", v1, 404, 40402)
	wantErr(t, "GET", base+"/schemas/ids/99", nil, 404, 40403)
	wantErr(t, "GET", base+"/schemas/ids/99/schema", nil, 404, 40403)
	wantErr(t, "GET", base+"/schemas/ids/x", nil, 404, 40403)
	wantErr(t, "POST", base+"/subjects/s", map[string]string{"schema": schemaV2}, 404, 40403)
	wantErr(t, "GET", base+"/config/s", nil, 404, 40408)
	wantErr(t, "POST", base+"/subjects/s/versions", map[string]string{"schema": schemaRetyped}, 409, 409)
	wantErr(t, "POST", base+"/subjects/s/versions", map[string]string{"schema": `{"type":"record","name":"R","fields":[{"name":"a","type":"nosuchtype"}]}`}, 422, 42201)
	wantErr(t, "POST", base+"/subjects/s/versions", map[string]string{"schema": `not json`}, 422, 42201)
	wantErr(t, "POST", base+"/subjects/s/versions", map[string]string{"schema": ""}, 422, 42201)
	wantErr(t, "POST", base+"/subjects/s/versions", map[string]string{"schema": `"string"`, "schemaType": "PROTOBUF"}, 422, 42201)
	wantErr(t, "POST", base+"/subjects/s/versions", map[string]any{"schema": `"string"`, "references": []map[string]any{{"name": "x", "subject": "y", "version": 1}}}, 422, 42201)
	wantErr(t, "GET", base+"/subjects/s/versions/0", nil, 422, 42202)
	wantErr(t, "GET", base+"/subjects/s/versions/first", nil, 422, 42202)
	wantErr(t, "GET", base+"/subjects/s/versions/-2", nil, 422, 42202)
	wantErr(t, "PUT", base+"/config", map[string]string{"compatibility": "SOMETIMES"}, 422, 42203)
	wantErr(t, "PUT", base+"/config/s", map[string]string{"compatibility": ""}, 422, 42203)
	wantErr(t, "DELETE", base+"/subjects/s", nil, 405, 405)
	wantErr(t, "GET", base+"/no/such/path", nil, 404, 404)

	// The successful answers of the same resources.
	var vr versionResponse
	if st, b := call(t, "GET", base+"/subjects/s/versions/-1", nil, &vr); st != 200 || vr.ID != 1 || vr.Version != 1 || vr.Subject != "s" {
		t.Errorf("version -1 (latest): %d %s", st, b)
	}
	if st, b := call(t, "GET", base+"/schemas/ids/1/schema", nil, nil); st != 200 || string(b) != compactJSON(schemaV1) {
		t.Errorf("raw schema by id: %d %s", st, b)
	}
	if st, b := call(t, "GET", base+"/subjects/s/versions/1/schema", nil, nil); st != 200 || string(b) != compactJSON(schemaV1) {
		t.Errorf("raw schema by version: %d %s", st, b)
	}
	var types []string
	if call(t, "GET", base+"/schemas/types", nil, &types); !reflect.DeepEqual(types, []string{"AVRO"}) {
		t.Errorf("types = %v", types)
	}
	// A subject name with a slash, escaped.
	var id struct{ ID int }
	if st, b := call(t, "POST", base+"/subjects/"+url.PathEscape("team/a-value")+"/versions", v1, &id); st != 200 || id.ID != 1 {
		t.Errorf("subject with a slash: %d %s", st, b)
	}
	var subjects []string
	call(t, "GET", base+"/subjects", nil, &subjects)
	if !reflect.DeepEqual(subjects, []string{"s", "team/a-value"}) {
		t.Errorf("subjects = %q", subjects)
	}
}

// TestServerRestart: a new server on the same cluster reads the topic back
// and serves the same schemas, versions, ids and levels, and keeps
// assigning ids after the highest.
func TestServerRestart(t *testing.T) {
	c := testCluster(t)
	base, _, stop := testServer(t, c)
	sr := srclient.NewSchemaRegistryClient(base)
	s1, err := sr.CreateSchema("requests-value", schemaV1, srclient.Avro)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := sr.CreateSchema("requests-value", schemaV2, srclient.Avro)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sr.ChangeSubjectCompatibilityLevel("requests-value", srclient.Full); err != nil {
		t.Fatal(err)
	}
	if _, err := sr.ChangeSubjectCompatibilityLevel("requests-value", srclient.ForwardTransitive); err != nil {
		t.Fatal(err) // a second change of the same key: the last one wins
	}
	stop()

	base2, _, _ := testServer(t, c)
	sr2 := srclient.NewSchemaRegistryClient(base2)
	for _, want := range []*srclient.Schema{s1, s2} {
		got, err := sr2.GetSchema(want.ID())
		if err != nil || got.Schema() != want.Schema() {
			t.Errorf("after restart, id %d = %v %v", want.ID(), got, err)
		}
	}
	latest, err := sr2.GetLatestSchema("requests-value")
	if err != nil || latest.ID() != s2.ID() || latest.Version() != 2 {
		t.Errorf("after restart, latest = %+v %v", latest, err)
	}
	lvl, err := sr2.GetCompatibilityLevel("requests-value", false)
	if err != nil || *lvl != srclient.ForwardTransitive {
		t.Errorf("after restart, level = %v %v", lvl, err)
	}
	again, err := sr2.CreateSchema("requests-value", schemaV2, srclient.Avro)
	if err != nil || again.ID() != s2.ID() {
		t.Errorf("after restart, re-register v2 = %+v %v", again, err)
	}
	s3, err := sr2.CreateSchema("new-value", `"string"`, srclient.Avro)
	if err != nil || s3.ID() != 3 {
		t.Errorf("after restart, a new schema = %+v %v, want id 3", s3, err)
	}
}

// TestServerWritesConfluentLayout: the topic holds Confluent's record
// layout, and is compacted with one partition.
func TestServerWritesConfluentLayout(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	call(t, "POST", base+"/subjects/s/versions", map[string]string{"schema": `"string"`}, nil)
	call(t, "PUT", base+"/config", map[string]string{"compatibility": "NONE"}, nil)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(DefaultTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	for len(got) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Key)+" "+string(r.Value)) })
	}
	want := []string{
		`{"keytype":"SCHEMA","subject":"s","version":1,"magic":1} {"subject":"s","version":1,"id":1,"schema":"\"string\"","deleted":false}`,
		`{"keytype":"CONFIG","subject":null,"magic":0} {"compatibilityLevel":"NONE"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("topic records:\n got %q\nwant %q", got, want)
	}
	adm := kadm.NewClient(cl)
	cfgs, err := adm.DescribeTopicConfigs(ctx, DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cfgs.On(DefaultTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, kv := range cfg.Configs {
		if kv.Key == "cleanup.policy" {
			found = true
			if kv.MaybeValue() != "compact" {
				t.Errorf("cleanup.policy = %q", kv.MaybeValue())
			}
		}
	}
	if !found {
		t.Errorf("cleanup.policy not set on %s", DefaultTopic)
	}
}

func TestNewServerRefusesSharedClients(t *testing.T) {
	c := testCluster(t)
	ctx := context.Background()
	for name, opt := range map[string]kgo.Opt{
		"group":  kgo.ConsumerGroup("g"),
		"topics": kgo.ConsumeTopics("t"),
		"acks":   kgo.RequiredAcks(kgo.LeaderAck()),
	} {
		opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), opt}
		if name == "acks" {
			opts = append(opts, kgo.DisableIdempotentWrite())
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewServer(ctx, cl, ""); err == nil {
			t.Errorf("%s: NewServer accepted the client", name)
		}
		cl.Close()
	}
}

// TestServerListingsAndMode checks the listing and mode endpoints against
// the shapes of Confluent's API reference: GET /schemas/ids/{id}/subjects
// is an array of subject names; GET /schemas an array of {subject, version,
// id, schema} objects (schemaType omitted for Avro, as Confluent does),
// filtered by subjectPrefix and latestOnly and paged by offset and limit;
// GET /mode and /mode/{subject} are {"mode": "READWRITE"}.
func TestServerListingsAndMode(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	for _, reg := range []struct{ subject, schema string }{{"a-value", schemaV1}, {"b-value", schemaV1}, {"a-value", schemaV2}} {
		if st, b := call(t, "POST", base+"/subjects/"+reg.subject+"/versions", map[string]string{"schema": reg.schema}, nil); st != 200 {
			t.Fatalf("register %s: %d %s", reg.subject, st, b)
		}
	}
	v1, v2 := compactJSON(schemaV1), compactJSON(schemaV2)

	var subjects []string
	if st, b := call(t, "GET", base+"/schemas/ids/1/subjects", nil, &subjects); st != 200 || !reflect.DeepEqual(subjects, []string{"a-value", "b-value"}) {
		t.Errorf("subjects of id 1: %d %s, want [a-value b-value]", st, b)
	}
	if st, b := call(t, "GET", base+"/schemas/ids/2/subjects", nil, &subjects); st != 200 || !reflect.DeepEqual(subjects, []string{"a-value"}) {
		t.Errorf("subjects of id 2: %d %s, want [a-value]", st, b)
	}
	wantErr(t, "GET", base+"/schemas/ids/99/subjects", nil, 404, 40403)

	type entry = map[string]any
	row := func(subject string, version, id int, text string) entry {
		return entry{"subject": subject, "version": float64(version), "id": float64(id), "schema": text}
	}
	for _, tc := range []struct {
		query string
		want  []entry
	}{
		{"", []entry{row("a-value", 1, 1, v1), row("a-value", 2, 2, v2), row("b-value", 1, 1, v1)}},
		{"?subjectPrefix=b", []entry{row("b-value", 1, 1, v1)}},
		{"?latestOnly=true", []entry{row("a-value", 2, 2, v2), row("b-value", 1, 1, v1)}},
		{"?offset=1&limit=1", []entry{row("a-value", 2, 2, v2)}},
		{"?subjectPrefix=nope", []entry{}},
	} {
		var got []entry
		if st, b := call(t, "GET", base+"/schemas"+tc.query, nil, &got); st != 200 || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("GET /schemas%s: %d %s\nwant %v", tc.query, st, b, tc.want)
		}
	}
	wantErr(t, "GET", base+"/schemas?limit=x", nil, 422, 422)

	for _, path := range []string{"/mode", "/mode/a-value", "/mode/nope?defaultToGlobal=true"} {
		if st, b := call(t, "GET", base+path, nil, nil); st != 200 || strings.TrimSpace(string(b)) != `{"mode":"READWRITE"}` {
			t.Errorf("GET %s: %d %s, want {\"mode\":\"READWRITE\"}", path, st, b)
		}
	}
	wantErr(t, "GET", base+"/mode/nope", nil, 404, 40401)
	wantErr(t, "PUT", base+"/mode", map[string]string{"mode": "READONLY"}, 422, 42204)
	if st, b := call(t, "PUT", base+"/mode/a-value", map[string]string{"mode": "READWRITE"}, nil); st != 200 || strings.TrimSpace(string(b)) != `{"mode":"READWRITE"}` {
		t.Errorf("PUT /mode/a-value READWRITE: %d %s", st, b)
	}
}
