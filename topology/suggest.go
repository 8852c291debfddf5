package topology

import "strings"

// ClosestName returns the name among names closest to name by edit
// distance (case-insensitive), when it is close enough to be a likely
// misspelling: at most a third of name's length apart, and at least 1. The
// spec's hints ("did you mean ...?") and the runtime's missing-field
// warnings use this one rule.
func ClosestName(name string, names []string) (string, bool) {
	best, bestDist := "", 1<<30
	for _, n := range names {
		if n == name {
			continue
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(n)); d < bestDist || d == bestDist && n < best {
			best, bestDist = n, d
		}
	}
	return best, best != "" && bestDist <= max(1, len(name)/3)
}
