package main

import (
	"strings"
	"testing"
)

// TestParseParallelism: --parallelism is auto (0, the processor's
// GOMAXPROCS default) or a positive number; anything else is an error
// naming the flag.
func TestParseParallelism(t *testing.T) {
	for in, want := range map[string]int{"auto": 0, "1": 1, "4": 4, "64": 64} {
		if got, err := parseParallelism(in); err != nil || got != want {
			t.Errorf("parseParallelism(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "-2", "two", "1.5"} {
		if _, err := parseParallelism(bad); err == nil || !strings.Contains(err.Error(), "--parallelism") {
			t.Errorf("parseParallelism(%q): %v, want an error naming --parallelism", bad, err)
		}
	}
}
