package httpauth

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
