package state

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A locked directory cannot be locked again (here by the same process: flock
// locks belong to an open file, so this is what a second process sees); the
// error names the directory and the holder's pid, and is ErrStateDirLocked,
// never ErrCorruptState. After Unlock the directory can be locked again.
func TestLockDirOneOwner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "app")
	first, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LockDir(dir)
	if err == nil {
		second.Unlock()
		t.Fatal("second LockDir of a held directory succeeded")
	}
	if !errors.Is(err, ErrStateDirLocked) || errors.Is(err, ErrCorruptState) {
		t.Fatalf("err = %v; want ErrStateDirLocked and not ErrCorruptState", err)
	}
	var le *DirLockedError
	if !errors.As(err, &le) {
		t.Fatalf("err = %T; want *DirLockedError", err)
	}
	host, _ := os.Hostname()
	if le.Dir != dir || le.PID != os.Getpid() || le.Host != host || le.Since.IsZero() {
		t.Errorf("holder = %+v; want dir %s, pid %d, host %s and a start time", le, dir, os.Getpid(), host)
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "--state-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not contain %q", err, want)
		}
	}
	// The refused attempt changed nothing: the holder's lock file is intact.
	b, err := os.ReadFile(filepath.Join(dir, LockFileName))
	if err != nil || !strings.Contains(string(b), "pid="+strconv.Itoa(os.Getpid())) {
		t.Errorf("lock file after a refused lock: %q, %v", b, err)
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	again, err := LockDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again.Unlock()
}

// A lock file left by a process that died (or an empty one) does not hold
// the directory: only a live flock does.
func TestLockDirStaleFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, LockFileName), []byte("pid=1\nhost=gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := LockDir(dir)
	if err != nil {
		t.Fatalf("lock with a stale lock file: %v", err)
	}
	defer l.Unlock()
	b, _ := os.ReadFile(filepath.Join(dir, LockFileName))
	if !strings.HasPrefix(string(b), "pid="+strconv.Itoa(os.Getpid())+"\n") {
		t.Errorf("lock file = %q; want this process's pid", b)
	}
}

// Pebble's own lock (a store opened twice without LockDir) is an error, but
// not corruption: nothing may be wiped because of it.
func TestOpenHeldIsNotCorrupt(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db2, err := Open(dir); err == nil {
		db2.Close()
		t.Fatal("second Open of one directory succeeded")
	} else if errors.Is(err, ErrCorruptState) {
		t.Fatalf("second Open: %v; a held lock must not read as corruption", err)
	}
}

// A directory Pebble cannot read is corruption, and the error names the
// damaged file.
func TestOpenCorruptNamesFile(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ms, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(ms) != 1 {
		t.Fatalf("manifests: %v", ms)
	}
	// Garbage in place of the manifest's records.
	if err := os.WriteFile(ms[0], []byte(strings.Repeat("\xde\xad\xbe\xef", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorruptState) {
		t.Fatalf("open of a damaged store: %v; want a *CorruptError", err)
	}
	if ce.File != filepath.Base(ms[0]) {
		t.Errorf("CorruptError.File = %q; want %q (err %v)", ce.File, filepath.Base(ms[0]), err)
	}
}
