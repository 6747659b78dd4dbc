package transport

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff spaces out attempts to reach a peer: no wait before the first
// attempt, then backoffMin doubling up to backoffMax, each wait jittered by
// ±25 % so that many relays that lost the same peer do not redial in step.
type backoff struct {
	next     time.Duration // wait before the next attempt; 0 = none
	attempts int           // failures since the last reset
}

func (b *backoff) failed() {
	b.attempts++
	if b.next == 0 {
		b.next = backoffMin
		return
	}
	b.next = min(2*b.next, backoffMax)
}

func (b *backoff) reset() { *b = backoff{} }

// delay returns the jittered wait for the next attempt.
func (b *backoff) delay() time.Duration {
	if b.next == 0 {
		return 0
	}
	return b.next - b.next/4 + rand.N(b.next/2+1)
}

// wait sleeps for delay(), returning early with errStopped if ctx or stop
// ends first.
func (b *backoff) wait(ctx context.Context, stop <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return errStopped
	case <-stop:
		return errStopped
	default:
	}
	d := b.delay()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errStopped
	case <-stop:
		return errStopped
	}
}
