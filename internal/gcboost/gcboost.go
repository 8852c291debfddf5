// Package gcboost lets phases that build a large, long-lived heap (a
// restore filling the open-window index) make Go's collector run less
// often while they last.
//
// While the live heap grows fast, every collection marks all of it
// again: restoring a million windows at GOGC=100 spent about 40% of its
// CPU in the collector (BENCHMARKS.md, issue 17). Hold sets GOGC to
// Percent until the last holder releases it, then puts back what was
// there. The soft memory limit (eddy's --memory-limit) still holds: the
// collector runs as often as it must to stay under it, whatever GOGC
// says. Without a limit the heap may grow further than at GOGC=100 while
// a hold lasts (for the million-window restore, 20% more peak RSS).
//
// A GOGC set in the environment is the operator's choice: Hold leaves it.
package gcboost

import (
	"os"
	"runtime/debug"
	"sync"
)

// Percent is the GOGC a hold sets.
const Percent = 400

var (
	mu      sync.Mutex
	holders int
	prev    int
)

// Hold raises GOGC to Percent (unless GOGC is set in the environment)
// until every hold is released. release may be called more than once.
func Hold() (release func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	mu.Lock()
	holders++
	if holders == 1 {
		prev = debug.SetGCPercent(Percent)
	}
	mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			holders--
			if holders == 0 {
				debug.SetGCPercent(prev)
			}
		})
	}
}
