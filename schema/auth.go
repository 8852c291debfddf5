package schema

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Role is what an authenticated user of eddy's registry may do.
type Role int

const (
	// RoleRead may read schemas, look them up and check compatibility:
	// what consumers and eddy pipelines with Avro input need.
	RoleRead Role = iota + 1
	// RoleWrite may also register schemas and change modes and
	// compatibility levels: producers, and pipelines with Avro output.
	RoleWrite
)

// Users are the users of eddy's registry, read from a file of lines
//
//	name:bcrypt-hash[:role]
//
// where role is read (the default: least privilege) or write, and the
// hash is what `htpasswd -nbB name password` prints after the colon
// (bcrypt, $2a$/$2b$/$2y$). Blank lines and lines starting with # are
// ignored. Hashes, not passwords, are stored, so the Secret holding the
// file does not give the passwords away. The file is read again when it
// changes.
//
// bcrypt is slow by design (tens of milliseconds a check): a password
// that checked once is remembered as its SHA-256 until the file changes,
// so each request after the first costs a hash, not a bcrypt.
type Users struct {
	path string

	mu       sync.Mutex // guards the fields below
	users    map[string]userEntry
	size     int64
	mod      time.Time
	verified map[string][32]byte // user -> sha256 of a password that passed bcrypt
}

type userEntry struct {
	hash []byte
	role Role
}

// LoadUsers reads path, failing (naming the line, never a hash) on a line
// it cannot read.
func LoadUsers(path string) (*Users, error) {
	u := &Users{path: path}
	if err := u.reload(); err != nil {
		return nil, err
	}
	return u, nil
}

// reload re-reads the file if it changed; callers hold u.mu or own u.
func (u *Users) reload() error {
	fi, err := os.Stat(u.path)
	if err != nil {
		return fmt.Errorf("--registry-users-file: %w", err)
	}
	if u.users != nil && fi.Size() == u.size && fi.ModTime().Equal(u.mod) {
		return nil
	}
	b, err := os.ReadFile(u.path)
	if err != nil {
		return fmt.Errorf("--registry-users-file: %w", err)
	}
	users := make(map[string]userEntry)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 2 || len(f) > 3 || f[0] == "" {
			return fmt.Errorf("--registry-users-file %s line %d: want name:bcrypt-hash[:read|write]", u.path, n)
		}
		if _, err := bcrypt.Cost([]byte(f[1])); err != nil {
			return fmt.Errorf("--registry-users-file %s line %d (user %s): the hash is not bcrypt (htpasswd -nbB makes one)", u.path, n, f[0])
		}
		e := userEntry{hash: []byte(f[1]), role: RoleRead}
		if len(f) == 3 {
			switch f[2] {
			case "read":
			case "write":
				e.role = RoleWrite
			default:
				return fmt.Errorf("--registry-users-file %s line %d (user %s): role %q, want read or write", u.path, n, f[0], f[2])
			}
		}
		users[f[0]] = e
	}
	if len(users) == 0 {
		return fmt.Errorf("--registry-users-file %s: no users in it", u.path)
	}
	u.users, u.size, u.mod, u.verified = users, fi.Size(), fi.ModTime(), make(map[string][32]byte)
	return nil
}

// Check returns the role of user when pass is their password.
func (u *Users) Check(user, pass string) (Role, bool) {
	u.mu.Lock()
	_ = u.reload() // an unreadable file mid-rotation keeps the last users
	e, ok := u.users[user]
	seen, wasVerified := u.verified[user]
	u.mu.Unlock()
	sum := sha256.Sum256([]byte(pass))
	if !ok {
		// The same work as for a user that exists, so timing does not
		// tell which names do.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(pass))
		return 0, false
	}
	if wasVerified && subtle.ConstantTimeCompare(seen[:], sum[:]) == 1 {
		return e.role, true
	}
	if bcrypt.CompareHashAndPassword(e.hash, []byte(pass)) != nil {
		return 0, false
	}
	u.mu.Lock()
	if cur, ok := u.users[user]; ok && bytes.Equal(cur.hash, e.hash) {
		u.verified[user] = sum
	}
	u.mu.Unlock()
	return e.role, true
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("eddy-no-such-user"), bcrypt.MinCost)

// isWrite reports whether r changes the registry: registering a schema,
// setting a mode or a compatibility level, deleting. Looking a schema up
// (POST /subjects/S) and checking compatibility (POST /compatibility/...)
// only read.
func isWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	case http.MethodPost:
		p := strings.TrimSuffix(r.URL.Path, "/")
		return strings.HasPrefix(p, "/subjects/") && strings.HasSuffix(p, "/versions")
	}
	return true
}

// Guard wraps eddy's registry so that every request needs credentials:
// HTTP basic auth of a user in users, or a bearer token for which bearer
// returns true (it grants writes). Either may be nil. Writes need a user
// with RoleWrite. Refusals are Confluent-style JSON answers: 401 (error
// code 40101) with a WWW-Authenticate challenge, or 403 (40301) for a
// read-only user writing.
func Guard(next http.Handler, users *Users, bearer func(token string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, ok := Role(0), false
		if name, pass, basic := r.BasicAuth(); basic && users != nil {
			role, ok = users.Check(name, pass)
		} else if h := r.Header.Get("Authorization"); bearer != nil && len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			if ok = bearer(strings.TrimSpace(h[7:])); ok {
				role = RoleWrite
			}
		}
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Basic realm="eddy-registry"`)
			replyErr(w, &apiError{status: http.StatusUnauthorized, code: 40101,
				msg: "unauthorized: this registry needs a user (basic auth) or a token"})
		case isWrite(r) && role != RoleWrite:
			replyErr(w, &apiError{status: http.StatusForbidden, code: 40301,
				msg: "forbidden: this user may read, not write (a read-only user)"})
		default:
			next.ServeHTTP(w, r)
		}
	})
}
