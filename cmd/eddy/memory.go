package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryMax is where cgroup v2 exposes the container's memory limit
// ("max" when there is none).
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// Row cache sizing from the memory limit: a quarter of the limit goes to
// the row caches of cacheTasks tasks, at about cacheRowBytes per row (a
// window row with a few counters, a DDSketch and a HyperLogLog, plus map
// overhead). The rest is for Pebble's block cache, the Kafka clients'
// buffers, dirty rows between commits and the Go runtime.
const (
	cacheRowBytes = 1 << 10
	cacheTasks    = 8
	cacheMinRows  = 1000
	cacheMaxRows  = 100000 // the processor's default, kept when memory is plentiful
)

// memoryLimit resolves the --memory-limit setting to bytes (0: unlimited)
// and says where the value came from. "auto" reads the cgroup v2 file at
// cgroupFile.
func memoryLimit(setting, cgroupFile string) (limit int64, source string, err error) {
	if strings.EqualFold(strings.TrimSpace(setting), "auto") {
		b, err := os.ReadFile(cgroupFile)
		if errors.Is(err, os.ErrNotExist) {
			return 0, "no cgroup v2 memory limit found", nil
		}
		if err != nil {
			return 0, "", fmt.Errorf("--memory-limit auto: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, cgroupFile + " is max", nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, "", fmt.Errorf("--memory-limit auto: %s holds %q, not a byte count", cgroupFile, v)
		}
		return n, cgroupFile, nil
	}
	n, err := parseBytes(setting)
	if err != nil {
		return 0, "", fmt.Errorf("--memory-limit: %w", err)
	}
	return n, "--memory-limit", nil
}

// parseBytes reads a byte count: a plain number (what the Kubernetes
// downward API gives for limits.memory) or a number with a unit, binary
// (Ki, Mi, Gi, Ti, optionally followed by B) or decimal (k/K, M, G, T,
// optionally followed by B).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if mult == 0 || err != nil || f < 0 {
		return 0, fmt.Errorf("%q: want bytes, or a number with Ki, Mi, Gi, Ti, K, M, G or T (e.g. 512Mi), or auto", s)
	}
	b := f * mult
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return int64(b), nil
}

// cacheRowsFor is the per-task row cache for a memory limit; 0 (no limit)
// leaves the processor's default.
func cacheRowsFor(limit int64) int {
	if limit <= 0 {
		return 0
	}
	rows := limit / 4 / cacheTasks / cacheRowBytes
	return int(min(max(rows, cacheMinRows), cacheMaxRows))
}

// applyMemoryLimit resolves the --memory-limit setting, sets Go's soft
// memory limit to 90% of it (unless GOMEMLIMIT is set: the user's choice
// wins), so the garbage collector works harder before the container is
// OOM-killed, and returns the per-task row cache size.
func applyMemoryLimit(log *slog.Logger, setting string) (cacheRows int, err error) {
	limit, source, err := memoryLimit(setting, cgroupMemoryMax)
	if err != nil {
		return 0, err
	}
	if limit == 0 {
		log.Info("memory: no limit; default row cache", "source", source)
		return 0, nil
	}
	rows := cacheRowsFor(limit)
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(limit / 10 * 9)
	}
	log.Info("memory: sized from the limit", "limit_bytes", limit, "source", source, "cache_rows_per_task", rows)
	return rows, nil
}
