package httpauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRequireDeniesByDefault(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadToken("--http-token-file", f)
	if err != nil {
		t.Fatal(err)
	}
	h := Require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }), tok, "/healthz")
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", http.StatusTeapot},
		{"/healthz/", "", http.StatusUnauthorized},
		{"/x/../healthz", "", http.StatusUnauthorized},
		{"/anything", "", http.StatusUnauthorized},
		{"/anything", "Bearer abd", http.StatusUnauthorized},
		{"/anything", "Bearer ab", http.StatusUnauthorized},
		{"/anything", "Basic abc", http.StatusUnauthorized},
		{"/anything", "Bearer abc", http.StatusTeapot},
		{"/anything", "bearer abc", http.StatusTeapot},
	} {
		r := httptest.NewRequest("GET", "http://x"+c.path, nil)
		r.URL.Path = c.path // as received, uncleaned
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != c.want {
			t.Errorf("%s %q: %d, want %d", c.path, c.auth, rec.Code, c.want)
		}
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != `Bearer realm="eddy"` {
			t.Errorf("%s: challenge %q", c.path, rec.Header().Get("WWW-Authenticate"))
		}
	}
	// Rotation: the new token only, at the next request.
	if err := os.WriteFile(f, []byte("a-new-one"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(f, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if tok.Matches("abc") || !tok.Matches("a-new-one") {
		t.Error("the rotated token file was not read again")
	}
	// A file emptied mid-rotation keeps the last token.
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !tok.Matches("a-new-one") || tok.Matches("") {
		t.Error("an empty token file must keep the last token and never match an empty one")
	}
}

func TestLoadTokenEmpty(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadToken("--http-token-file", f); err == nil {
		t.Fatal("an empty token file was accepted")
	}
}

// TestLoginCookie: a browser signs in at /login and then carries the
// token in an HttpOnly, SameSite=Strict cookie; the redirect stays local.
func TestLoginCookie(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("tkn"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadToken("--http-token-file", f)
	if err != nil {
		t.Fatal(err)
	}
	h := Require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }), tok)
	do := func(method, target, body string, cookie *http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if cookie != nil {
			r.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	if rec := do("GET", "/login?next=/console/", "", nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), `value="/console/"`) {
		t.Errorf("GET /login: %d %s", rec.Code, rec.Body)
	}
	if rec := do("POST", "/login", "token=nope&next=/console/", nil); rec.Code != http.StatusUnauthorized || len(rec.Result().Cookies()) != 0 {
		t.Errorf("POST /login with a wrong token: %d, cookies %v", rec.Code, rec.Result().Cookies())
	}
	rec := do("POST", "/login", "token=tkn&next=/console/", nil)
	cs := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/" || len(cs) != 1 {
		t.Fatalf("POST /login: %d %q %v", rec.Code, rec.Header().Get("Location"), cs)
	}
	if c := cs[0]; c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict", c)
	}
	if got := do("GET", "/console/", "", cs[0]).Code; got != http.StatusTeapot {
		t.Errorf("with the cookie: %d", got)
	}
	if got := do("GET", "/console/", "", &http.Cookie{Name: CookieName, Value: "nope"}).Code; got != http.StatusUnauthorized {
		t.Errorf("with a wrong cookie: %d", got)
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		rec := do("POST", "/login", "token=tkn&next="+url.QueryEscape(next), nil)
		if loc := rec.Header().Get("Location"); loc != "/" {
			t.Errorf("next=%q redirected to %q, want /", next, loc)
		}
	}
}
