package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// route is one pattern registered on an http.ServeMux somewhere in eddy's
// source, and the file that registers it.
type route struct {
	pattern string // as registered: "GET /subjects/{subject}", "/metrics"
	file    string // relative to the repository root
}

// registeredRoutes finds every Handle/HandleFunc call in the repository's
// non-test Go files and the pattern it registers: a string literal, a
// string constant of the package, or a sum of those. The route walk tests
// below request each one, so a route added later by anyone (the console,
// state queries) is checked without editing them. A pattern it cannot
// work out fails the test, so no route escapes the walk unnoticed.
func registeredRoutes(t *testing.T) []route {
	t.Helper()
	root := "../.."
	fset := token.NewFileSet()
	type call struct {
		arg  ast.Expr
		file string
		pkg  string // directory: constants resolve within it
	}
	var calls []call
	consts := map[string]map[string]string{} // dir -> const name -> value
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		dir := filepath.Dir(rel)
		if consts[dir] == nil {
			consts[dir] = map[string]string{}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GenDecl:
				if n.Tok == token.CONST {
					for _, sp := range n.Specs {
						vs := sp.(*ast.ValueSpec)
						for i, name := range vs.Names {
							if i < len(vs.Values) {
								if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
									consts[dir][name.Name], _ = strconv.Unquote(lit.Value)
								}
							}
						}
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if ok && len(n.Args) == 2 && (sel.Sel.Name == "Handle" || sel.Sel.Name == "HandleFunc") {
					calls = append(calls, call{n.Args[0], filepath.ToSlash(rel), dir})
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var eval func(e ast.Expr, dir string) (string, bool)
	eval = func(e ast.Expr, dir string) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				v, err := strconv.Unquote(e.Value)
				return v, err == nil
			}
		case *ast.Ident:
			v, ok := consts[dir][e.Name]
			return v, ok
		case *ast.ParenExpr:
			return eval(e.X, dir)
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				a, ok1 := eval(e.X, dir)
				b, ok2 := eval(e.Y, dir)
				return a + b, ok1 && ok2
			}
		}
		return "", false
	}
	var out []route
	for _, c := range calls {
		p, ok := eval(c.arg, c.pkg)
		if id, isIdent := c.arg.(*ast.Ident); !ok && isIdent && id.Name == "ctx" {
			continue // slog.Handler.Handle(ctx, record), not a route
		}
		if !ok {
			t.Errorf("%s:%v: a route pattern the walk cannot work out: register it with a string literal or constant, "+
				"or teach registeredRoutes", c.file, fset.Position(c.arg.Pos()).Line)
			continue
		}
		if strings.Contains(p, "/") {
			out = append(out, route{pattern: p, file: c.file})
		}
	}
	return out
}

var wildcard = regexp.MustCompile(`\{([a-zA-Z_]+)(\.\.\.)?\}`)

// request turns a pattern into a concrete method and path: wildcards
// become their names ({subject} -> subject).
func (r route) request() (method, path string) {
	method, path = http.MethodGet, r.pattern
	if m, p, ok := strings.Cut(r.pattern, " "); ok {
		method, path = m, strings.TrimSpace(p)
	}
	if i := strings.Index(path, "/"); i > 0 { // a host pattern: keep the path
		path = path[i:]
	}
	return method, wildcard.ReplaceAllString(path, "$1")
}

// probe sends one request, with the bearer token when tok is not empty,
// and returns the status.
func probe(t *testing.T, c *http.Client, method, url, tok string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("%s %s: 401 without a WWW-Authenticate challenge", method, url)
	}
	return resp.StatusCode
}

// loopbackURL turns a logged listen address ("[::]:port", "0.0.0.0:port")
// into a URL on 127.0.0.1.
func loopbackURL(t *testing.T, scheme, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return scheme + "://127.0.0.1:" + port
}

// walkRoutes checks one server: every route registered in files (by
// registeredRoutes), plus paths nobody registered, answers 401 without
// the token and a wrong token, and something else with it; the open
// paths answer without it.
func walkRoutes(t *testing.T, c *http.Client, base, tok string, routes []route, open map[string]bool) {
	t.Helper()
	extra := []route{{pattern: "/no-such-route"}, {pattern: "/healthz/"}, {pattern: "POST /healthz/../metrics"}, {pattern: "/console/"}, {pattern: "/api/v1/x"}}
	for _, r := range append(routes, extra...) {
		method, path := r.request()
		url := base + path
		if open[path] {
			if got := probe(t, c, method, url, ""); got == http.StatusUnauthorized {
				t.Errorf("%s %s (%s): 401 without a token; it must stay open", method, path, r.file)
			}
			continue
		}
		if got := probe(t, c, method, url, ""); got != http.StatusUnauthorized {
			t.Errorf("%s %s (%s): status %d without a token, want 401", method, path, r.file, got)
		}
		if got := probe(t, c, method, url, tok+"x"); got != http.StatusUnauthorized {
			t.Errorf("%s %s (%s): status %d with a wrong token, want 401", method, path, r.file, got)
		}
		if got := probe(t, c, method, url, tok); got == http.StatusUnauthorized || got == http.StatusForbidden {
			t.Errorf("%s %s (%s): status %d with the token", method, path, r.file, got)
		}
	}
}

// listenAddr waits for the log line msg and returns its addr= value.
func (w *worker) listenAddr(t *testing.T, msg string) string {
	t.Helper()
	var addr string
	waitFor(t, 30*time.Second, "the listen address in the log", func() (bool, string) {
		for _, l := range strings.Split(w.logs(), "\n") {
			if strings.Contains(l, `msg="`+msg+`"`) {
				if i := strings.Index(l, "addr="); i >= 0 {
					addr = strings.Fields(l[i+len("addr="):])[0]
					return true, ""
				}
			}
		}
		return false, w.logs()
	})
	return addr
}

// TestHTTPAuthEveryRoute: a worker bound beyond loopback with TLS and a
// token. Every route registered anywhere in eddy outside the registry,
// and paths nobody registered, need the token; /healthz and /readyz do
// not; the token is read again when its file changes.
func TestHTTPAuthEveryRoute(t *testing.T) {
	brokers := kafkatest.Kfake(t)
	e := newE2E(t, brokers, "at_least_once")
	ca := newTestCA(t, "http")
	cert, key := ca.issue(t, "eddy-worker", false)
	dir := t.TempDir()
	const tok = "s3cret-http-token-7f3a"
	tokFile := writeSecret(t, dir, "token", tok)
	w := startEddy(t, []string{"EDDY_HTTP_TOKEN_FILE=" + tokFile, "EDDY_HTTP_TLS_CERT_FILE=" + cert, "EDDY_HTTP_TLS_KEY_FILE=" + key},
		"run", "-f", e.spec, "--brokers", e.brokerList(), "--state-dir", t.TempDir(), "--http-addr", "0.0.0.0:0", "--log-level", "debug")
	base := loopbackURL(t, "https", w.listenAddr(t, "serving health and metrics"))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.tlsClient()}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()

	var routes []route
	for _, r := range registeredRoutes(t) {
		if r.file != "schema/server.go" { // eddy registry's own API: TestHTTPAuthRegistryRoutes
			routes = append(routes, r)
		}
	}
	for _, want := range []string{"/metrics", "/healthz", "/readyz"} {
		found := false
		for _, r := range routes {
			_, p := r.request()
			found = found || p == want
		}
		if !found {
			t.Fatalf("route discovery found no %s in %v: it is broken", want, routes)
		}
	}
	walkRoutes(t, c, base, tok, routes, map[string]bool{"/healthz": true, "/readyz": true})
	if got := probe(t, c, "GET", base+"/metrics", tok); got != http.StatusOK {
		t.Errorf("/metrics with the token: %d, want 200", got)
	}
	if got := probe(t, c, "GET", base+"/healthz", ""); got != http.StatusOK {
		t.Errorf("/healthz without a token: %d, want 200", got)
	}
	// Plain HTTP on the TLS port gets no answer from a handler.
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get(strings.Replace(base, "https", "http", 1) + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: status %d, want 400", resp.StatusCode)
		}
	}
	// A browser signs in at /login and carries the token in a cookie.
	resp, err := c.PostForm(base+"/login", url.Values{"token": {tok}, "next": {"/metrics"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Fatalf("POST /login: %d, cookies %v; want 303 and one Secure cookie", resp.StatusCode, resp.Cookies())
	}
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.AddCookie(resp.Cookies()[0])
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics with the login cookie: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// A rotated token: the old one is refused, the new one accepted.
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	writeSecret(t, dir, "token", tok+"-rotated-longer")
	if got := probe(t, c, "GET", base+"/metrics", tok); got != http.StatusUnauthorized {
		t.Errorf("/metrics with the old token after rotation: %d, want 401", got)
	}
	if got := probe(t, c, "GET", base+"/metrics", tok+"-rotated-longer"); got != http.StatusOK {
		t.Errorf("/metrics with the rotated token: %d, want 200", got)
	}
	if strings.Contains(w.logs(), tok) {
		t.Errorf("the token is in the worker's log")
	}
}

// TestHTTPAuthMetricsOpen: --http-metrics-open leaves /metrics (only it)
// open for scrapers.
func TestHTTPAuthMetricsOpen(t *testing.T) {
	brokers := kafkatest.Kfake(t)
	e := newE2E(t, brokers, "at_least_once")
	tokFile := writeSecret(t, t.TempDir(), "token", "tkn-metrics-open")
	w := startEddy(t, []string{"EDDY_HTTP_TOKEN_FILE=" + tokFile},
		"run", "-f", e.spec, "--brokers", e.brokerList(), "--state-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--http-metrics-open", "true")
	base := "http://" + w.listenAddr(t, "serving health and metrics")
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	if got := probe(t, c, "GET", base+"/metrics", ""); got != http.StatusOK {
		t.Errorf("/metrics without a token under --http-metrics-open: %d, want 200", got)
	}
	if got := probe(t, c, "POST", base+"/expired/ack", ""); got != http.StatusUnauthorized {
		t.Errorf("/expired/ack without a token under --http-metrics-open: %d, want 401", got)
	}
}

// TestHTTPRefusesOpenNonLoopback: without a token, eddy run, eddy demo
// and eddy registry refuse to serve beyond loopback unless --http-insecure says so.
func TestHTTPRefusesOpenNonLoopback(t *testing.T) {
	brokers := kafkatest.Kfake(t)
	e := newE2E(t, brokers, "at_least_once")
	for _, args := range [][]string{
		{"run", "-f", e.spec, "--brokers", e.brokerList(), "--state-dir", t.TempDir(), "--http-addr", "0.0.0.0:0"},
		{"run", "-f", e.spec, "--brokers", e.brokerList(), "--state-dir", t.TempDir(), "--http-addr", ":0"},
		{"registry", "--brokers", e.brokerList(), "--http-addr", "0.0.0.0:0"},
		{"demo", "--data-dir", t.TempDir(), "--duration", "60s", "--http-addr", "0.0.0.0:0"},
	} {
		r := runEddy(t, 60*time.Second, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "binds beyond loopback without credentials") {
			t.Errorf("eddy %s: exit %d, stderr:\n%s\nwant a refusal naming --http-token-file", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	w := startEddy(t, nil, "run", "-f", e.spec, "--brokers", e.brokerList(), "--state-dir", t.TempDir(), "--http-addr", "0.0.0.0:0", "--http-insecure", "true")
	base := loopbackURL(t, "http", w.listenAddr(t, "serving health and metrics"))
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	if got := probe(t, c, "GET", base+"/metrics", ""); got != http.StatusOK {
		t.Errorf("/metrics under --http-insecure: %d, want 200", got)
	}
}
