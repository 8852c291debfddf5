package state

// Ownership of a state directory.
//
// A state directory belongs to one process. LockDir takes an exclusive,
// non-blocking flock(2) on the file LOCK_FILE ("eddy.lock") in the
// directory before anything else in the directory is opened, and holds it
// until Unlock. The kernel releases the lock when the process dies, however
// it dies, so a lock is never stale; the file itself stays (its content is
// informative only: who held it last).
//
// Invariant: no eddy code opens, wipes or rebuilds a state directory it
// has not locked. A second process gets *DirLockedError
// (errors.Is(err, ErrStateDirLocked)) and must leave the directory alone:
// the lock is never a sign of damage.
//
// flock and not Pebble's own lock: Pebble's LOCK file is an fcntl lock
// taken inside pebble.Open, whose failure is an error like any other (it
// was once taken for corruption and the directory wiped under the running
// worker); it says nothing of the holder; and the demo's data directory
// holds more than Pebble (the embedded Kafka's data). flock locks belong
// to an open file description, so a second lock of the same directory in
// the same process fails too (tests rely on it), where fcntl locks would
// silently succeed.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LockFileName is the name of the lock file in a locked directory.
const LockFileName = "eddy.lock"

// ErrStateDirLocked is the class of errors returned when a state directory
// is held by another process (or another LockDir of this one).
var ErrStateDirLocked = errors.New("state directory is in use by another process")

// DirLockedError says which directory is held and, as far as the lock file
// tells, by whom.
type DirLockedError struct {
	Dir string
	// Holder, as written by the holder: its pid, host and start time. PID
	// is 0 when the lock file could not be read (the holder is writing it,
	// or an older eddy holds the directory).
	PID   int
	Host  string
	Since time.Time
}

func (e *DirLockedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", ErrStateDirLocked, e.Dir)
	switch {
	case e.PID > 0:
		fmt.Fprintf(&b, " (held by pid %d", e.PID)
		if e.Host != "" {
			fmt.Fprintf(&b, " on %s", e.Host)
		}
		if !e.Since.IsZero() {
			fmt.Fprintf(&b, " since %s", e.Since.UTC().Format(time.RFC3339))
		}
		b.WriteString(")")
	default:
		b.WriteString(" (holder unknown)")
	}
	b.WriteString("; stop that process or use another directory (--state-dir, or --data-dir for the demo)")
	return b.String()
}

// Is makes errors.Is(err, ErrStateDirLocked) true.
func (e *DirLockedError) Is(target error) bool { return target == ErrStateDirLocked }

// DirLock is a held lock on a directory.
type DirLock struct {
	dir string
	f   *os.File
}

// LockDir creates dir if needed and locks it for this process. It never
// waits: a directory held elsewhere gives *DirLockedError at once.
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if held {
		e := &DirLockedError{Dir: dir}
		readHolder(f, e)
		f.Close()
		return nil, e
	}
	// Ours: say who holds it, for the next process that tries.
	host, _ := os.Hostname()
	info := fmt.Sprintf("pid=%d\nhost=%s\nsince=%s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0)
	}
	return &DirLock{dir: dir, f: f}, nil
}

// readHolder fills e from the lock file's content, as far as it can.
func readHolder(f *os.File, e *DirLockedError) {
	b := make([]byte, 512)
	n, _ := f.ReadAt(b, 0)
	for _, line := range strings.Split(string(b[:n]), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "pid":
			e.PID, _ = strconv.Atoi(v)
		case "host":
			e.Host = v
		case "since":
			e.Since, _ = time.Parse(time.RFC3339, v)
		}
	}
}

// Dir returns the locked directory.
func (l *DirLock) Dir() string { return l.dir }

// Unlock releases the lock. The lock file stays. Unlock of a nil lock
// does nothing.
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
