package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor/runbook"
	"github.com/eddy-streams/eddy/topology"
)

const rbDoc = "# Doc\n\n```eddy\nsource: {topics: [t]}\nkey: [k]\nwindow: {type: tumbling, size: 10s}\naggregates: [{name: n, op: count}]\n---\ndisplay: table\n```\n\nEnd.\n"

func newTestRunbooks(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "doc.md"), []byte(rbDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	rb, err := NewRunbooks(RunbooksConfig{Dir: dir, Brokers: []string{"127.0.0.1:1"},
		NewEngine: func(context.Context, *topology.Spec) (runbook.Engine, error) {
			t.Error("no preview runs in this test")
			return nil, context.Canceled
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rb.Handler())
	t.Cleanup(func() { srv.Close(); rb.Close() })
	return srv, dir
}

func send(t *testing.T, method, url, ctype, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String()
}

func TestRunbooksAPIWrites(t *testing.T) {
	srv, dir := newTestRunbooks(t)
	base := srv.URL + "/api/v1/runbooks/doc.md/blocks/0"
	// Only .md files of the directory are documents.
	for _, name := range []string{"..%2Fetc%2Fpasswd", "doc.txt", ".hidden.md"} {
		if code, _ := send(t, "GET", srv.URL+"/api/v1/runbooks/"+name, "", ""); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", name, code)
		}
	}
	// Writes need a JSON body (a cross-site form cannot send one).
	if code, _ := send(t, "PUT", base, "application/x-www-form-urlencoded", "text=x"); code != http.StatusUnsupportedMediaType {
		t.Errorf("form PUT: %d, want 415", code)
	}
	// A save against a block that changed on disk is refused.
	if code, _ := send(t, "PUT", base, "application/json", `{"old": "something else\n", "text": "key: [j]\n"}`); code != http.StatusConflict {
		t.Errorf("stale save: %d, want 409", code)
	}
	// A block with a fence line inside is refused, the file unchanged.
	if code, _ := send(t, "PUT", base, "application/json", "{\"text\": \"a\\n```\\nb\\n\"}"); code != http.StatusBadRequest {
		t.Errorf("fence in block: %d, want 400", code)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "doc.md")); string(b) != rbDoc {
		t.Errorf("the file changed after refused saves:\n%s", b)
	}
	// Check reports problems at the document's lines.
	code, body := send(t, "POST", base+"/check", "application/json", `{"text": "source: {topics: [t]}\nkey: [k]\nwindow: {type: tumbling}\naggregates: [{name: n, op: count}]\n"}`)
	if code != http.StatusOK || !strings.Contains(body, `"line 6: window.size: must be set for a tumbling window`) {
		t.Errorf("check: %d %s", code, body)
	}
	// Promote refuses a bad processing guarantee and writes a good file.
	if code, _ := send(t, "POST", base+"/promote", "application/json", `{"processing": "maybe"}`); code != http.StatusBadRequest {
		t.Errorf("promote with a bad guarantee: %d", code)
	}
	code, body = send(t, "POST", base+"/promote", "application/json", `{"app": "doc-counts"}`)
	if code != http.StatusOK {
		t.Fatalf("promote: %d %s", code, body)
	}
	yml, err := os.ReadFile(filepath.Join(dir, "pipelines", "doc-counts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if spec, err := topology.Parse(yml); err != nil || spec.App != "doc-counts" {
		t.Fatalf("promoted file: %v\n%s", err, yml)
	}
	if !strings.Contains(body, "eddy run -f "+filepath.Join(dir, "pipelines", "doc-counts.yaml")+" --brokers 127.0.0.1:1") {
		t.Errorf("promote response lacks the command: %s", body)
	}
}
