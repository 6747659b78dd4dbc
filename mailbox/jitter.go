package mailbox

import (
	"math/rand/v2"
	"time"
)

// The owner's periodic requests (fetches, deletions) leave at random
// times, so that their period does not fingerprint an owner at its node:
// each wait is drawn afresh from an exponential law of the configured mean,
// truncated to [mean/10, 4·mean] (no two requests closer than a tenth of
// the mean, none later than four means). The truncated law's mean is
// 0.1 + e^-0.1 − e^-4 ≈ 0.99 of the configured one. What stays: the mean
// itself (over many requests an observer estimates it), and requests that
// answer events (a restock after NeedSURBs, a gap fetch 2 s after a push
// arrived out of order) follow those events.

// jitter is a timer firing after waits drawn as above; call Next after
// each tick.
type jitter struct {
	mean time.Duration
	t    *time.Timer
	C    <-chan time.Time
}

func newJitter(mean time.Duration) *jitter {
	j := &jitter{mean: mean, t: time.NewTimer(drawWait(mean))}
	j.C = j.t.C
	return j
}

// Next arms the timer for the next wait.
func (j *jitter) Next() { j.t.Reset(drawWait(j.mean)) }

// Stop stops the timer.
func (j *jitter) Stop() { j.t.Stop() }

// drawWait draws one wait of mean mean (truncated exponential).
func drawWait(mean time.Duration) time.Duration {
	f := min(max(rand.ExpFloat64(), 0.1), 4)
	return time.Duration(f * float64(mean))
}
