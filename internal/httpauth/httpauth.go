// Package httpauth guards eddy's HTTP endpoints (health, metrics, the
// console, state queries) with a bearer token.
//
// The guard is deny-by-default: every path needs the token except the
// exact paths the caller lists as open (/healthz and /readyz, which
// Kubernetes probes reach without credentials, and /metrics when the
// operator says so). A route added to the server later is protected
// without anyone remembering to protect it.
//
// The token lives in a file (a key of a mounted Kubernetes Secret) and is
// read again when the file changes, so a rotated token is accepted at the
// next request. It is compared in constant time and never logged or echoed.
package httpauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrNoToken is returned by LoadToken for a file with no token in it.
var ErrNoToken = errors.New("the token file is empty")

// Token is a bearer token read from a file.
type Token struct {
	path    string
	setting string // flag name, for errors

	mu   sync.Mutex // guards the fields below
	sum  [32]byte   // sha256 of the token: what requests are compared with
	size int64
	mod  time.Time
}

// LoadToken reads the token in path (trailing newlines dropped) and fails,
// naming setting, when the file is missing or empty.
func LoadToken(setting, path string) (*Token, error) {
	t := &Token{path: path, setting: setting}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// reload re-reads the file when its size or modification time changed.
// Callers hold t.mu or own t exclusively.
func (t *Token) reload() error {
	fi, err := os.Stat(t.path)
	if err != nil {
		return fmt.Errorf("%s: %w", t.setting, err)
	}
	if fi.Size() == t.size && fi.ModTime().Equal(t.mod) {
		return nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("%s: %w", t.setting, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return fmt.Errorf("%s %s: %w", t.setting, t.path, ErrNoToken)
	}
	t.sum, t.size, t.mod = sha256.Sum256([]byte(v)), fi.Size(), fi.ModTime()
	return nil
}

// Matches reports whether got is the current token. Hashing both sides
// first makes the comparison constant-time whatever their lengths. A file
// that became unreadable keeps the last token (a rotation in progress).
func (t *Token) Matches(got string) bool {
	t.mu.Lock()
	_ = t.reload()
	want := t.sum
	t.mu.Unlock()
	g := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(g[:], want[:]) == 1
}

// BearerToken returns the token of an "Authorization: Bearer T" header,
// or "" when there is none.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// CookieName is the cookie a browser carries the token in after
// LoginPath: browsers cannot add an Authorization header to page loads,
// EventSource or WebSocket requests.
const CookieName = "eddy_token"

// LoginPath is where a browser trades the token for the cookie. It is
// always open (it grants nothing without the token).
const LoginPath = "/login"

// Require wraps next so that every request needs the token, as
// "Authorization: Bearer <token>" or in the CookieName cookie, except
// requests for the exact paths in open and LoginPath. r.URL.Path is
// compared as received: "/healthz/" or "/x/../healthz" is not open (the
// mux would redirect it anyway), so no spelling of a path slips past.
func Require(next http.Handler, tok *Token, open ...string) http.Handler {
	isOpen := make(map[string]bool, len(open))
	for _, p := range open {
		isOpen[p] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == LoginPath:
			login(w, r, tok)
		case isOpen[r.URL.Path] || tok.Matches(requestToken(r)):
			next.ServeHTTP(w, r)
		default:
			Unauthorized(w, "Bearer")
		}
	})
}

// requestToken is the bearer token of r, else its cookie's.
func requestToken(r *http.Request) string {
	if t := BearerToken(r); t != "" {
		return t
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return c.Value
	}
	return ""
}

const loginForm = `<!doctype html><meta charset="utf-8"><title>eddy: sign in</title>
<form method="post" action="/login"><p>%s</p><label>Token <input type="password" name="token" autofocus></label>
<input type="hidden" name="next" value="%s"><button>Sign in</button></form>`

// login shows a form for the token (GET) and, given the right one (POST),
// sets it as an HttpOnly, SameSite=Strict cookie (Secure over TLS) and
// redirects to next (a local path only, so the form cannot be used to
// send someone elsewhere).
func login(w http.ResponseWriter, r *http.Request, tok *Token) {
	next := r.FormValue("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		next = "/"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet:
		fmt.Fprintf(w, loginForm, "This eddy needs its HTTP token (--http-token-file).", html.EscapeString(next))
	case http.MethodPost:
		if !tok.Matches(r.PostFormValue("token")) {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, loginForm, "That is not the token.", html.EscapeString(next))
			return
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: r.PostFormValue("token"), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		http.Redirect(w, r, next, http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
	}
}

// Unauthorized answers 401 with a WWW-Authenticate challenge for scheme
// ("Bearer" or "Basic") and a body that says what is missing, never what
// was sent.
func Unauthorized(w http.ResponseWriter, scheme string) {
	w.Header().Set("WWW-Authenticate", scheme+` realm="eddy"`)
	http.Error(w, "unauthorized: this endpoint needs "+scheme+" credentials (docs/security.md); in a browser, sign in at "+LoginPath, http.StatusUnauthorized)
}
