package queue

import (
	"fmt"
	"math"
)

// Geometry of a message in packets. A payload of P bytes holds a version
// byte and items; a message of n bytes is coded in T-byte symbols with
//
//	Tmax = floor((P − 1 − ChunkHeaderSize) / 8) · 8   (one symbol + header fills a payload)
//	T    = min(Tmax, roundup8(ceil(n / 10)))          (10 = the smallest K' of RFC 6330)
//
// so large messages send one symbol per packet and small ones several
// (at most K'+2, enough to decode from one packet).
type geometry struct {
	n, t, k, kPrime int
	per             int // symbols per packet (no SURB in it)
}

func maxSymbol(payload int) int { return (payload - 1 - ChunkHeaderSize) / 8 * 8 }

func planMessage(n, payload int) (geometry, error) {
	tmax := maxSymbol(payload)
	if tmax < 8 {
		return geometry{}, fmt.Errorf("%w: payload of %d bytes holds no symbol", ErrFEC, payload)
	}
	if n < 1 {
		return geometry{}, fmt.Errorf("%w: empty message", ErrFEC)
	}
	t := min(tmax, ((n+9)/10+7)/8*8)
	k := (n + t - 1) / t
	kPrime, _, err := SourceBlock(k)
	if err != nil {
		return geometry{}, err
	}
	if k > math.MaxUint16 || t > math.MaxUint16 {
		return geometry{}, fmt.Errorf("%w: message of %d bytes too large", ErrFEC, n)
	}
	per := min((payload-1-ChunkHeaderSize)/t, kPrime+2)
	return geometry{n: n, t: t, k: k, kPrime: kPrime, per: per}, nil
}

// packetsFor returns how many packets carry s symbols.
func (g geometry) packetsFor(s int) int { return (s + g.per - 1) / g.per }

// reliablePackets is the smallest number of packets N such that at least n
// of them arrive with probability ≥ target when each is lost independently
// with probability loss: the repair overhead of a Reliable round.
func reliablePackets(n int, loss, target float64) int {
	if n < 1 {
		return 0
	}
	loss = clampLoss(loss)
	if loss == 0 {
		return n
	}
	q := 1 - loss
	for N := n; ; N++ {
		// P(X ≥ n), X ~ Binomial(N, q), summed in log space.
		tail := 0.0
		lgN, _ := math.Lgamma(float64(N + 1))
		for k := n; k <= N; k++ {
			lk, _ := math.Lgamma(float64(k + 1))
			lnk, _ := math.Lgamma(float64(N - k + 1))
			tail += math.Exp(lgN - lk - lnk + float64(k)*math.Log(q) + float64(N-k)*math.Log(loss))
		}
		if tail >= target || N >= 20*n+100 {
			return N
		}
	}
}

// fastPackets adds the expected loss to n packets, rounded up: few repair
// symbols, no resends.
func fastPackets(n int, loss float64) int {
	loss = clampLoss(loss)
	if loss == 0 {
		return n
	}
	return n + int(math.Ceil(float64(n)*loss/(1-loss)))
}

// surbCopies is how many SURBs a Reliable round carries, each in its own
// packet, so that at least one arrives with probability ≥ 0.95 (at most 3).
func surbCopies(loss float64) int {
	loss = clampLoss(loss)
	c := 1
	for c < 3 && math.Pow(loss, float64(c)) > 0.05 {
		c++
	}
	return c
}

func clampLoss(p float64) float64 {
	if !(p > 0) { // also NaN
		return 0
	}
	return min(p, 0.9)
}
