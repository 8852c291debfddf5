//go:build !unix

package state

import "os"

// Without flock, ownership rests on Pebble's own lock (taken in Open).
func tryLock(*os.File) (bool, error) { return false, nil }

func unlock(*os.File) error { return nil }
