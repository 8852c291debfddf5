package processor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/eddy-streams/eddy/state"
)

// openState opens the state database in dir, which the caller has locked
// (state.LockDir). Only damage that Pebble reports (state.ErrCorruptState)
// wipes the directory, keeping its lock file, and rebuilds it: every
// partition is then restored from its changelog. Any other error (a
// permission, a full disk, a lock held by a process that does not take
// eddy's lock) stops the worker and leaves the directory as it is.
func openState(log *slog.Logger, dir string) (*state.DB, error) {
	db, err := state.Open(dir)
	if err == nil {
		return db, nil
	}
	var ce *state.CorruptError
	if !errors.As(err, &ce) {
		return nil, err
	}
	log.Warn("local state is damaged; wiping it and rebuilding every partition from its changelog",
		"dir", dir, "file", ce.File, "reason", ce.Err)
	if err := wipeDir(dir); err != nil {
		return nil, fmt.Errorf("remove damaged state %s: %w", dir, err)
	}
	return state.Open(dir)
}

// wipeDir removes everything in dir except its lock file, which the
// process holds (removing it would let a third process lock a new file of
// the same name).
func wipeDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == state.LockFileName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
