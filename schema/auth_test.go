package schema

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func bhash(t *testing.T, p string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestUsersFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "users")
	write := func(s string) {
		if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"", "# only a comment\n", "alice\n", "alice:notbcrypt\n", "alice:" + bhash(t, "x") + ":admin\n"} {
		write(bad)
		if _, err := LoadUsers(f); err == nil {
			t.Errorf("users file %q accepted", bad)
		} else if strings.Contains(err.Error(), "$2a$") {
			t.Errorf("the error shows a hash: %v", err)
		}
	}
	write("alice:" + bhash(t, "a-pw") + ":write\nbob:" + bhash(t, "b-pw") + "\n")
	u, err := LoadUsers(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, pass string
		role       Role
		ok         bool
	}{{"alice", "a-pw", RoleWrite, true}, {"bob", "b-pw", RoleRead, true}, {"bob", "a-pw", 0, false}, {"carol", "a-pw", 0, false}, {"alice", "a-pw", RoleWrite, true}} {
		if role, ok := u.Check(c.user, c.pass); ok != c.ok || role != c.role {
			t.Errorf("Check(%s, %s) = %v %v, want %v %v", c.user, c.pass, role, ok, c.role, c.ok)
		}
	}
	// A changed file: alice's old password (verified before, cached) no
	// longer passes.
	write("alice:" + bhash(t, "a-new") + ":write\n")
	_ = os.Chtimes(f, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if _, ok := u.Check("alice", "a-pw"); ok {
		t.Error("the old password passed after the users file changed")
	}
	if _, ok := u.Check("alice", "a-new"); !ok {
		t.Error("the new password failed")
	}
}

func TestGuard(t *testing.T) {
	f := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(f, []byte("w:"+bhash(t, "wp")+":write\nr:"+bhash(t, "rp")+":read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUsers(f)
	if err != nil {
		t.Fatal(err)
	}
	h := Guard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }), u,
		func(tok string) bool { return tok == "tk" })
	for _, c := range []struct {
		method, path, user, pass, bearer string
		want                             int
	}{
		{"GET", "/subjects", "", "", "", 401},
		{"GET", "/subjects", "r", "rp", "", 418},
		{"GET", "/subjects", "r", "wp", "", 401},
		{"POST", "/subjects/s", "r", "rp", "", 418},                               // lookup reads
		{"POST", "/compatibility/subjects/s/versions/latest", "r", "rp", "", 418}, // a check reads
		{"POST", "/subjects/s/versions", "r", "rp", "", 403},
		{"PUT", "/config", "r", "rp", "", 403},
		{"DELETE", "/subjects/s", "r", "rp", "", 403},
		{"POST", "/subjects/s/versions", "w", "wp", "", 418},
		{"POST", "/subjects/s/versions", "", "", "tk", 418},
		{"POST", "/subjects/s/versions", "", "", "tx", 401},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.user != "" {
			r.SetBasicAuth(c.user, c.pass)
		}
		if c.bearer != "" {
			r.Header.Set("Authorization", "Bearer "+c.bearer)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != c.want {
			t.Errorf("%s %s as %q/%q: %d, want %d (%s)", c.method, c.path, c.user, c.bearer, rec.Code, c.want, rec.Body)
		}
	}
}

func TestRegistryAuthClass(t *testing.T) {
	for _, status := range []int{401, 403} {
		re, retry := classify("op", status, errors.New("x"))
		if retry || !errors.Is(re, ErrRegistryAuth) || !errors.Is(re, ErrRegistryUnavailable) {
			t.Errorf("HTTP %d: %v retry %v; want ErrRegistryAuth (an ErrRegistryUnavailable) without retry", status, re, retry)
		}
		if _, bad := DeadLetterClass(re); bad {
			t.Errorf("HTTP %d would dead-letter a record", status)
		}
	}
}
