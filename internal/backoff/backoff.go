// Package backoff is the exponential delay of eddy's retries: the schema
// registry at start-up and while records wait for it, and the abort of a
// transaction whose end failed.
package backoff

import (
	"context"
	"time"
)

// Backoff is an exponential delay between attempts: Next returns Min,
// then twice the previous delay, up to Max. The zero value of Cur starts
// at Min.
type Backoff struct {
	Min, Max time.Duration
	Cur      time.Duration // the last delay Next returned; 0 before the first
}

// Next returns the delay before the next attempt and doubles it for the
// one after.
func (b *Backoff) Next() time.Duration {
	if b.Cur == 0 {
		b.Cur = b.Min
	} else {
		b.Cur = min(2*b.Cur, b.Max)
	}
	return b.Cur
}

// Reset starts over at Min.
func (b *Backoff) Reset() { b.Cur = 0 }

// Sleep waits for d, or until ctx ends; it reports whether it waited the
// whole d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
