package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testCluster starts a kfake cluster closed when the test ends.
func testCluster(t testing.TB) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testServer starts a registry on the cluster and serves it over HTTP.
// stop closes the HTTP server and the server's Kafka client (for restart
// tests); it is also called when the test ends.
func testServer(t testing.TB, c *kfake.Cluster) (url string, srv *Server, stop func()) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err = NewServer(ctx, cl, "")
	if err != nil {
		cl.Close()
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			hs.Close()
			cl.Close()
		}
	}
	t.Cleanup(stop)
	return hs.URL, srv, stop
}

// testClient returns a Client of url with fast retries, closed when the
// test ends.
func testClient(t testing.TB, url string, opts ...ClientOption) *Client {
	t.Helper()
	c := NewClient(url, append([]ClientOption{ClientRetries(3, 5*time.Millisecond, 20*time.Millisecond), ClientTimeout(2 * time.Second)}, opts...)...)
	t.Cleanup(c.Close)
	return c
}

// call makes a raw HTTP request and decodes the JSON answer into out (if
// not nil); it returns the status and the body.
func call(t testing.TB, method, url string, body any, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("%s %s: Content-Type %q, want %q", method, url, ct, ContentType)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, b
}

// apiErr is Confluent's error body.
type apiErr struct {
	Code    int    `json:"error_code"`
	Message string `json:"message"`
}

// wantErr checks a raw call answers with status and Confluent code.
func wantErr(t testing.TB, method, url string, body any, status, code int) apiErr {
	t.Helper()
	var e apiErr
	got, raw := call(t, method, url, body, &e)
	if got != status || e.Code != code || e.Message == "" {
		t.Errorf("%s %s: got %d %s, want %d with error_code %d and a message", method, url, got, raw, status, code)
	}
	return e
}

const (
	// v1 of a request event.
	schemaV1 = `{"type":"record","name":"Request","namespace":"eddy.test","fields":[
		{"name":"endpoint","type":"string"},
		{"name":"latency_ms","type":"double"}]}`
	// v2 adds a field with a default: BACKWARD compatible.
	schemaV2 = `{"type":"record","name":"Request","namespace":"eddy.test","fields":[
		{"name":"endpoint","type":"string"},
		{"name":"latency_ms","type":"double"},
		{"name":"region","type":"string","default":"eu"}]}`
	// noDefault adds a field without a default: not BACKWARD compatible.
	schemaNoDefault = `{"type":"record","name":"Request","namespace":"eddy.test","fields":[
		{"name":"endpoint","type":"string"},
		{"name":"latency_ms","type":"double"},
		{"name":"status","type":"int"}]}`
	// retyped changes a field's type: not BACKWARD compatible.
	schemaRetyped = `{"type":"record","name":"Request","namespace":"eddy.test","fields":[
		{"name":"endpoint","type":"long"},
		{"name":"latency_ms","type":"double"}]}`
)
