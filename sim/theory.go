package sim

import "math"

// LoopixEntropy returns the Loopix paper's steady-state entropy, in bits,
// of a message leaving a single Poisson mix with arrival rate λ and mean
// delay d, given rho = λ·d: log2(rho) + log2(e). It is the first-order
// approximation that treats the pool as always holding rho messages.
func LoopixEntropy(rho float64) float64 {
	return math.Log2(rho) + math.Log2E
}

// PoissonMixEntropy returns the exact expected entropy, in bits, of a
// target's distribution over the messages leaving a single mix with Poisson
// arrivals and exponential delays (an M/M/∞ queue), given rho = λ·d. It
// solves, for a target of unit mass in a pool of n messages, the expected
// entropy still to come, W(n):
//
//	(λ + nμ)·W(n) = λ·W(n+1) + μ·(log2 n + (n−1)·log2(n/(n−1))) + (n−1)·μ·W(n−1)
//
// (an arrival makes the pool n+1; a departure takes mass 1/n and leaves
// 1−1/n spread over n−1 messages, whose entropy is (1−1/n)·W(n−1) −
// (1−1/n)·log2(1−1/n)), then averages W(1+j) over the j ~ Poisson(rho)
// messages a Poisson arrival finds in the pool. It agrees with
// LoopixEntropy to 0.002 bits from rho = 10 up and lets tests check the
// simulator below that.
func PoissonMixEntropy(rho float64) float64 {
	if rho <= 0 || math.IsNaN(rho) || math.IsInf(rho, 0) {
		return math.NaN()
	}
	lambda, mu := rho, 1.0
	size := int(rho+30*math.Sqrt(rho)) + 60
	sub := make([]float64, size)
	diag := make([]float64, size)
	sup := make([]float64, size)
	rhs := make([]float64, size)
	for i := range size {
		n := float64(i + 1)
		g := math.Log2(n)
		if n > 1 {
			g += (n - 1) * math.Log2(n/(n-1))
		}
		sub[i], diag[i], sup[i], rhs[i] = -(n-1)*mu, lambda+n*mu, -lambda, mu*g
	}
	// Far above rho the pool is almost never reached; there W grows like
	// log2 n, which closes the system.
	last := size - 1
	n := float64(size)
	diag[last] += sup[last]
	rhs[last] -= sup[last] * math.Log2((n+1)/n)
	sup[last] = 0
	for i := 1; i < size; i++ {
		m := sub[i] / diag[i-1]
		diag[i] -= m * sup[i-1]
		rhs[i] -= m * rhs[i-1]
	}
	w := make([]float64, size)
	w[last] = rhs[last] / diag[last]
	for i := last - 1; i >= 0; i-- {
		w[i] = (rhs[i] - sup[i]*w[i+1]) / diag[i]
	}
	var h float64
	logp := -rho
	for j := range size {
		if j > 0 {
			logp += math.Log(rho) - math.Log(float64(j))
		}
		h += math.Exp(logp) * w[j]
	}
	return h
}
