package sphinx

import (
	"fmt"
	"math"
	"time"
)

// DefaultDelayCap is the cap on a hop's delay, in multiples of the mean, when
// [DelayPolicy.Max] is zero.
const DefaultDelayCap = 10

// DelayPolicy is the network's per-hop delay rule, published in the PKI. Each
// Forward hop holds a packet for a delay drawn from an exponential
// distribution with mean Mean, capped at Max. The draw comes from the hop's
// key stream, so the sender and the hop compute the same delay and nobody can
// choose it: a relay never learns a delay from the packet, and the sender
// knows the latency of every packet it builds.
type DelayPolicy struct {
	// Mean is the mean per-hop delay; zero means no delay.
	Mean time.Duration
	// Max caps a delay; zero means DefaultDelayCap × Mean.
	Max time.Duration
}

// Validate reports whether d is usable.
func (d DelayPolicy) Validate() error {
	if d.Mean < 0 || d.Max < 0 {
		return fmt.Errorf("sphinx: negative delay policy %v/%v", d.Mean, d.Max)
	}
	return nil
}

// Sample maps a uniformly random 64-bit word to a delay: the word's top 53
// bits give u in (0, 1), and the delay is min(-Mean·ln u, Max) rounded down
// to a nanosecond.
func (d DelayPolicy) Sample(w uint64) time.Duration {
	if d.Mean <= 0 {
		return 0
	}
	u := (float64(w>>11) + 0.5) / (1 << 53)
	capped := d.Max
	if capped <= 0 {
		capped = DefaultDelayCap * d.Mean
	}
	x := -float64(d.Mean) * math.Log(u)
	if x >= float64(capped) {
		return capped
	}
	return time.Duration(x)
}
