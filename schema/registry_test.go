package schema

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestClient(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	var gets atomic.Int32
	counting := countingProxy(t, base, &gets)
	cl := testClient(t, counting)
	ctx := context.Background()

	id, err := cl.Register(ctx, "requests-value", schemaV1)
	if err != nil || id != 1 {
		t.Fatalf("register = %d %v", id, err)
	}
	if again, err := cl.Register(ctx, "requests-value", schemaV1); err != nil || again != id {
		t.Fatalf("re-register = %d %v", again, err)
	}

	// GetByID fetches and parses once per id, even under concurrency.
	gets.Store(0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := cl.GetByID(ctx, id)
			if err != nil || s.ID != id || s.Avro == nil || s.Avro.(interface{ FullName() string }).FullName() != "eddy.test.Request" {
				t.Errorf("GetByID = %+v %v", s, err)
			}
		}()
	}
	wg.Wait()
	if n := gets.Load(); n != 1 {
		t.Errorf("%d requests for one id, want 1", n)
	}

	if ok, err := cl.Compatible(ctx, "requests-value", schemaV2); err != nil || !ok {
		t.Errorf("compatible v2 = %v %v", ok, err)
	}
	if ok, err := cl.Compatible(ctx, "requests-value", schemaNoDefault); err != nil || ok {
		t.Errorf("compatible no-default = %v %v", ok, err)
	}
	if ok, err := cl.Compatible(ctx, "brand-new-value", schemaNoDefault); err != nil || !ok {
		t.Errorf("compatible with a new subject = %v %v", ok, err)
	}
	id2, err := cl.Register(ctx, "requests-value", schemaV2)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := cl.Latest(ctx, "requests-value")
	if err != nil || latest.ID != id2 || latest.Version != 2 || latest.Subject != "requests-value" || latest.Avro == nil {
		t.Errorf("latest = %+v %v", latest, err)
	}
	found, err := cl.Lookup(ctx, "requests-value", schemaV1)
	if err != nil || found.ID != id || found.Version != 1 {
		t.Errorf("lookup v1 = %+v %v", found, err)
	}

	// The answers about data, each with its class and never "unavailable".
	for name, tc := range map[string]struct {
		err  error
		want error
	}{
		"unknown id":       {second(cl.GetByID(ctx, 99)), ErrUnknownSchema},
		"unknown subject":  {second(cl.Latest(ctx, "nope")), ErrUnknownSubject},
		"lookup elsewhere": {second(cl.Lookup(ctx, "nope", schemaV1)), ErrUnknownSubject},
		"lookup not there": {second(cl.Lookup(ctx, "requests-value", schemaNoDefault)), ErrUnknownSchema},
		"incompatible":     {second(cl.Register(ctx, "requests-value", schemaRetyped)), ErrIncompatible},
		"invalid (local)":  {second(cl.Register(ctx, "requests-value", `{"type":"nope"}`)), ErrInvalidSchema},
	} {
		var re *RegistryError
		if !errors.Is(tc.err, tc.want) || errors.Is(tc.err, ErrRegistryUnavailable) || !errors.As(tc.err, &re) {
			t.Errorf("%s: %v, want class %v", name, tc.err, tc.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// countingProxy forwards to base and counts GET /schemas/ids requests.
func countingProxy(t testing.TB, base string, gets *atomic.Int32) string {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" && len(r.URL.Path) > len("/schemas/ids/") && r.URL.Path[:len("/schemas/ids/")] == "/schemas/ids/" {
			gets.Add(1)
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := tr.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(ps.Close)
	return ps.URL
}

// flaky is a registry front that can be switched into failure modes.
type flaky struct {
	mode    atomic.Value // string: "", "503", "500json", "404plain", "slow", "401"
	fails   atomic.Int32 // with mode "": fail this many more requests with 503 first
	next    http.Handler
	release chan struct{}
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mode, _ := f.mode.Load().(string)
	if mode == "" && f.fails.Add(-1) >= 0 {
		mode = "503"
	}
	switch mode {
	case "503":
		http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
	case "500json":
		w.Header().Set("Content-Type", ContentType)
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error_code":50001,"message":"Error in the backend data store"}`))
	case "404plain":
		http.Error(w, "404 page not found", http.StatusNotFound)
	case "401":
		w.Header().Set("Content-Type", ContentType)
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error_code":401,"message":"Unauthorized"}`))
	case "slow":
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
	default:
		f.next.ServeHTTP(w, r)
	}
}

func TestClientOutages(t *testing.T) {
	c := testCluster(t)
	_, srv, _ := testServer(t, c)
	f := &flaky{next: srv, release: make(chan struct{})}
	f.fails.Store(-1 << 30)
	fs := httptest.NewServer(f)
	defer fs.Close()
	defer close(f.release)
	cl := testClient(t, fs.URL, ClientTimeout(200*time.Millisecond))
	ctx := context.Background()
	id, err := cl.Register(ctx, "s", schemaV1)
	if err != nil {
		t.Fatal(err)
	}

	for _, mode := range []string{"503", "500json", "404plain", "slow", "401"} {
		f.mode.Store(mode)
		_, err := cl.GetByID(ctx, id)
		if !errors.Is(err, ErrRegistryUnavailable) || errors.Is(err, ErrUnknownSchema) {
			t.Errorf("%s: %v, want ErrRegistryUnavailable and not ErrUnknownSchema", mode, err)
		}
		if class, bad := DeadLetterClass(err); bad {
			t.Errorf("%s: dead-letter class %v for an outage", mode, class)
		}
		_, err = NewDecoder(cl).Decode(ctx, AppendWire(nil, id, []byte{2, 'x', 0}))
		if !errors.Is(err, ErrRegistryUnavailable) {
			t.Errorf("%s: decode: %v, want ErrRegistryUnavailable", mode, err)
		}
		t.Logf("%s: %v", mode, err)
	}

	// Back: the client recovers (nothing bad was cached).
	f.mode.Store("")
	if s, err := cl.GetByID(ctx, id); err != nil || s.ID != id {
		t.Fatalf("after recovery: %+v %v", s, err)
	}

	// Transient failures within the retry budget are not seen at all.
	id2, err := cl.Register(ctx, "s", schemaV2)
	if err != nil {
		t.Fatal(err)
	}
	f.fails.Store(2)
	if _, err := cl.GetByID(ctx, id2); err != nil {
		t.Errorf("two 503s then an answer, with 3 attempts: %v", err)
	}

	// The caller's context bounds the retries.
	f.mode.Store("503")
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	slow := testClient(t, fs.URL, ClientRetries(100, 20*time.Millisecond, 20*time.Millisecond))
	start := time.Now()
	if _, err := slow.GetByID(cctx, 12345); !errors.Is(err, ErrRegistryUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("canceled retries: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("retries outlived the context by far: %v", d)
	}
}

// TestClientRegistryDown: nothing listens, then the registry comes back on
// the same address.
func TestClientRegistryDown(t *testing.T) {
	c := testCluster(t)
	_, srv, _ := testServer(t, c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cl := testClient(t, "http://"+addr)
	ctx := context.Background()

	dec := NewDecoder(cl)
	rec := AppendWire(nil, 1, []byte{2, 'x'})
	_, err = dec.Decode(ctx, rec)
	if !errors.Is(err, ErrRegistryUnavailable) {
		t.Fatalf("registry down: %v, want ErrRegistryUnavailable", err)
	}
	if _, bad := DeadLetterClass(err); bad {
		t.Fatalf("registry down is a dead letter: %v", err)
	}

	// The registry comes back on the same address. Listening there again
	// can only fail if another process took the port meanwhile; retry
	// briefly, then fail rather than skip.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cannot listen on %s again: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	defer hs.Close()
	if _, err := cl.Register(ctx, "s", `{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}`); err != nil {
		t.Fatal(err)
	}
	m, err := dec.Decode(ctx, rec)
	if err != nil || m["s"] != "x" {
		t.Fatalf("registry back: %v %v", m, err)
	}
}
