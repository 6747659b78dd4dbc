package sim

import "math"

// massFloor is the target probability below which a pool forgets it. It
// bounds how long one target keeps pools busy (about ln(1/massFloor) ≈ 21
// mean delays a stratum); the mass forgotten is reported as Result.LostMass.
const massFloor = 1e-9

// A share is part of one target's probability: the adversary's belief that
// the message carrying it, or one of the messages of the pool holding it,
// is that target.
type share struct {
	target int32
	mass   float64
}

// anonymity propagates the targets' probabilities through the mixes, as
// docs/sim.md ("Entropy") explains:
//
//   - A message entering an honest relay pours its shares into the relay's
//     pool: the adversary sees it go in but not which message comes out.
//   - A message leaving an honest relay that holds n messages takes, for
//     every target, the pool's mass divided by n, and the pool keeps the
//     rest. With exponential delays every held message is equally likely
//     to be the one leaving, whatever the order they came in, so this is
//     the adversary's exact posterior (each departure picks one of the n).
//   - A corrupt relay tells the adversary which message is which: shares
//     pass through it unchanged.
//   - At the exit, the shares of the messages leaving the last stratum form
//     each target's distribution over exit messages; its Shannon entropy
//     sums -p·log2(p) over them.
//
// Only targets carry shares, so the cost is bounded by the messages that
// pass through a relay while it holds target mass, not by all traffic.
type anonymity struct {
	// pools[r] is the target mass pooled in honest relay r.
	pools [][]share
	// entropy[t] is -Σ p·log2(p) over the exit messages of target t so far.
	entropy []float64
	// out[t] is the mass of target t that has left the exit; lost[t] the
	// mass pools forgot below massFloor.
	out, lost []float64
	// holders[t] counts the pool entries and message shares holding mass
	// of target t; the target is done when it reaches zero.
	holders []int32
	// sent[t] and done[t] are when target t left its client and when its
	// last mass left the network (nanoseconds); done is -1 while running.
	sent, done []int64
	finished   int
}

func newAnonymity(relays, targets int) *anonymity {
	a := &anonymity{
		pools:   make([][]share, relays),
		entropy: make([]float64, 0, targets),
		out:     make([]float64, 0, targets),
		lost:    make([]float64, 0, targets),
		holders: make([]int32, 0, targets),
		sent:    make([]int64, 0, targets),
		done:    make([]int64, 0, targets),
	}
	return a
}

// target starts a new target sent at now and returns the share its
// message carries: all of the probability.
func (a *anonymity) target(now int64) share {
	t := int32(len(a.entropy))
	a.entropy = append(a.entropy, 0)
	a.out = append(a.out, 0)
	a.lost = append(a.lost, 0)
	a.holders = append(a.holders, 1)
	a.sent = append(a.sent, now)
	a.done = append(a.done, -1)
	return share{target: t, mass: 1}
}

// enter pours the shares of a message arriving at honest relay r into r's
// pool and returns the message's emptied share list.
func (a *anonymity) enter(r int32, shares []share) []share {
	pool := a.pools[r]
	for _, s := range shares {
		found := false
		for i := range pool {
			if pool[i].target == s.target {
				pool[i].mass += s.mass
				a.holders[s.target]--
				found = true
				break
			}
		}
		if !found {
			pool = append(pool, s)
		}
	}
	a.pools[r] = pool
	return shares[:0]
}

// leave gives a message leaving honest relay r, which held n messages
// including it, its part of every target mass in r's pool, appended to
// shares.
func (a *anonymity) leave(r int32, n int32, shares []share) []share {
	pool := a.pools[r]
	if len(pool) == 0 {
		return shares
	}
	inv := 1 / float64(n)
	for i := 0; i < len(pool); {
		e := &pool[i]
		p := e.mass * inv
		shares = append(shares, share{target: e.target, mass: p})
		a.holders[e.target]++
		e.mass -= p
		if n == 1 || e.mass < massFloor {
			a.lost[e.target] += e.mass
			a.holders[e.target]--
			pool[i] = pool[len(pool)-1]
			pool = pool[:len(pool)-1]
			continue
		}
		i++
	}
	a.pools[r] = pool
	return shares
}

// exit records the shares of a message leaving the last stratum at now.
func (a *anonymity) exit(shares []share, now int64) {
	for _, s := range shares {
		if s.mass > 0 {
			a.entropy[s.target] -= s.mass * math.Log2(s.mass)
			a.out[s.target] += s.mass
		}
		a.holders[s.target]--
		if a.holders[s.target] == 0 {
			a.done[s.target] = now
			a.finished++
		}
	}
}
