package state

import "github.com/cockroachdb/pebble/v2/vfs"

// OpenMem opens a state database held in memory only (Pebble's in-memory
// file system): nothing reaches the disk and everything is gone after
// Close. In-process runs use it (processor.Local: `eddy test`, runbook
// previews), where state needs no changelog and no restart.
func OpenMem() (*DB, error) { return openFS("/eddy-mem", vfs.NewMem()) }
