package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfiles turns on Go's profilers for a whole run of any subcommand,
// for performance work (BENCHMARKS.md): EDDY_CPUPROFILE=FILE writes a CPU
// profile and EDDY_MEMPROFILE=FILE an allocation profile (alloc_space and
// inuse_space, read with go tool pprof -sample_index=...), both when the
// command ends, including on SIGTERM. Neither is set in production. The
// returned function writes them; call it once, before exiting.
func startProfiles() (stop func()) {
	cpuFile, memFile := os.Getenv("EDDY_CPUPROFILE"), os.Getenv("EDDY_MEMPROFILE")
	var cpu *os.File
	if cpuFile != "" {
		f, err := os.Create(cpuFile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "eddy: EDDY_CPUPROFILE:", err)
		} else {
			cpu = f
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if memFile != "" {
			f, err := os.Create(memFile)
			if err == nil {
				runtime.GC()
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "eddy: EDDY_MEMPROFILE:", err)
			}
		}
	}
}
