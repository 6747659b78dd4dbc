package sim

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// Defaults of a simulation; the rates and the delay are the network
// defaults the PKI publishes.
const (
	DefaultClients    = 10000
	DefaultRelays     = 100
	DefaultLayers     = 3
	DefaultSuccessors = 8
	DefaultLambdaP    = 2.0
	DefaultLambdaL    = 0.5
	DefaultLambdaD    = 0.5
	DefaultLambdaM    = 0.5
	DefaultLambdaR    = 0.5
	DefaultMeanDelay  = 50 * time.Millisecond
	DefaultDuration   = 10 * time.Minute
	DefaultTargets    = 200
	DefaultSeed       = 1
)

// Limits that keep a run's memory bounded; a larger network is a mistake
// in the parameters, not a simulation this machine can do.
const (
	MaxClients = 10_000_000
	MaxRelays  = 100_000
	MaxLayers  = 16
	MaxTargets = 1_000_000
)

// Topology is how the relays of one stratum link to the next.
type Topology uint8

const (
	// Restricted links each relay to k relays of the next stratum, by the
	// PKI's link rule (pki.NewGraph: a k-regular bipartite graph drawn
	// from the beacon).
	Restricted Topology = iota
	// FullMesh links each relay to every relay of the next stratum: the
	// same graph with k at least the size of a stratum.
	FullMesh
)

// String returns the name the command line and the CSV use.
func (t Topology) String() string {
	switch t {
	case Restricted:
		return "restricted"
	case FullMesh:
		return "mesh"
	}
	return fmt.Sprintf("topology(%d)", uint8(t))
}

// ParseTopology reads a Topology name: "restricted" or "mesh".
func ParseTopology(s string) (Topology, error) {
	switch s {
	case "restricted":
		return Restricted, nil
	case "mesh":
		return FullMesh, nil
	}
	return 0, fmt.Errorf("%w: topology %q (want restricted or mesh)", ErrConfig, s)
}

// ErrConfig reports simulation parameters that cannot describe a network
// or a run.
var ErrConfig = errors.New("sim: bad parameters")

// Config describes a simulated network and a run over it. Start from
// DefaultConfig: a zero Config has no relays and is rejected.
type Config struct {
	// Clients is the number of Loopix clients. Default 10000.
	Clients int
	// Relays is the number of mix relays, cut into Layers strata whose
	// sizes differ by at most one. Default 100.
	Relays int
	// Layers is the number of strata a packet crosses. Default 3.
	Layers int
	// Topology chooses restricted routes or a full mesh. Default
	// Restricted.
	Topology Topology
	// Successors is k, the out-degree of a relay under restricted routes;
	// at most the size of the smallest stratum. Ignored for FullMesh.
	// Default 8.
	Successors int
	// LambdaP, LambdaL and LambdaD are each client's payload, loop and drop
	// rates, LambdaM each relay's loop rate, in packets per second.
	// Defaults 2, 0.5, 0.5 and 0.5.
	LambdaP, LambdaL, LambdaD, LambdaM float64
	// LambdaR is the rate at which each client's user queues real
	// messages; each payload slot carries the oldest queued one, or cover
	// when none is queued. It must stay below LambdaP, or queues grow
	// without bound. Default 0.5.
	LambdaR float64
	// Delay is the per-hop delay rule. Default mean 50ms, cap 10 × mean.
	Delay sphinx.DelayPolicy
	// Corrupt is the fraction of relays, chosen at random, that work for
	// the adversary. Default 0.
	Corrupt float64
	// Duration is the simulated time. Default 10 minutes.
	Duration time.Duration
	// Warmup is the simulated time before measurements start, so that
	// pools and queues are in steady state; zero means
	// 20 × Layers × mean delay + 5 / LambdaP.
	Warmup time.Duration
	// Targets is the number of target messages whose anonymity is
	// measured; zero measures only latency and bandwidth. Default 200.
	Targets int
	// Seed keys every random choice: the same Config gives the same
	// Result. Default 1.
	Seed uint64
	// Progress, if set, is called from time to time with the simulated
	// time done and Duration.
	Progress func(done, total time.Duration)
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Clients:    DefaultClients,
		Relays:     DefaultRelays,
		Layers:     DefaultLayers,
		Topology:   Restricted,
		Successors: DefaultSuccessors,
		LambdaP:    DefaultLambdaP,
		LambdaL:    DefaultLambdaL,
		LambdaD:    DefaultLambdaD,
		LambdaM:    DefaultLambdaM,
		LambdaR:    DefaultLambdaR,
		Delay:      sphinx.DelayPolicy{Mean: DefaultMeanDelay},
		Duration:   DefaultDuration,
		Targets:    DefaultTargets,
		Seed:       DefaultSeed,
	}
}

// Validate reports, before anything runs, why c cannot be simulated.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Relays < 1:
		return bad("%d relays (need at least one)", c.Relays)
	case c.Relays > MaxRelays:
		return bad("%d relays (at most %d)", c.Relays, MaxRelays)
	case c.Layers < 1 || c.Layers > MaxLayers:
		return bad("%d layers (1 to %d)", c.Layers, MaxLayers)
	case c.Relays < c.Layers:
		return bad("%d relays cannot fill %d strata", c.Relays, c.Layers)
	case c.Clients < 1 || c.Clients > MaxClients:
		return bad("%d clients (1 to %d)", c.Clients, MaxClients)
	case c.Topology != Restricted && c.Topology != FullMesh:
		return bad("unknown %v", c.Topology)
	case c.Topology == Restricted && c.Successors < 1:
		return bad("k = %d successors (need at least 1)", c.Successors)
	case c.Topology == Restricted && c.Successors > c.Relays/c.Layers:
		return bad("k = %d successors is larger than a stratum (%d relays in the smallest of %d); use the full mesh topology to link every relay",
			c.Successors, c.Relays/c.Layers, c.Layers)
	}
	rates := []struct {
		name string
		v    float64
	}{{"λP", c.LambdaP}, {"λL", c.LambdaL}, {"λD", c.LambdaD}, {"λM", c.LambdaM}, {"λR", c.LambdaR}}
	for _, r := range rates {
		if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) {
			return bad("rate %s = %v (must be a finite rate ≥ 0)", r.name, r.v)
		}
	}
	switch {
	case c.LambdaP+c.LambdaL+c.LambdaD == 0:
		return bad("every client rate is zero: no traffic to simulate")
	case c.LambdaR > 0 && c.LambdaR >= c.LambdaP:
		return bad("real rate λR = %v is not below the payload rate λP = %v: queues would grow without bound", c.LambdaR, c.LambdaP)
	case c.Targets > 0 && c.LambdaR == 0:
		return bad("%d targets but no real messages (λR = 0)", c.Targets)
	case c.Targets < 0 || c.Targets > MaxTargets:
		return bad("%d targets (0 to %d)", c.Targets, MaxTargets)
	case c.Corrupt < 0 || c.Corrupt > 1 || math.IsNaN(c.Corrupt):
		return bad("corrupt fraction %v (0 to 1)", c.Corrupt)
	case c.Duration <= 0:
		return bad("duration %v (must be positive)", c.Duration)
	case c.Warmup < 0:
		return bad("warmup %v (must not be negative)", c.Warmup)
	}
	if err := c.Delay.Validate(); err != nil {
		return bad("%v", err)
	}
	warm, drain := c.warmup(), c.drain()
	if c.Targets > 0 && warm+drain >= c.Duration {
		return bad("duration %v leaves no time to pick targets: warmup %v and drain %v at mean delay %v; raise the duration",
			c.Duration, warm, drain, c.Delay.Mean)
	}
	if c.Targets == 0 && warm >= c.Duration {
		return bad("duration %v is not longer than the warmup %v", c.Duration, warm)
	}
	return nil
}

// warmup returns the time before measurements start.
func (c Config) warmup() time.Duration {
	if c.Warmup > 0 {
		return c.Warmup
	}
	w := 20 * time.Duration(c.Layers) * c.Delay.Mean
	if c.LambdaP > 0 {
		w += time.Duration(5 / c.LambdaP * float64(time.Second))
	}
	return w
}

// drain returns the time kept free of new targets at the end of the run,
// so that the last target's probability has left the network: a pool
// holding a target's mass loses a fraction 1/n of it at each of its n
// messages' departures, so it falls below massFloor after about
// ln(1/massFloor) ≈ 21 mean delays, and each further stratum adds a few
// mean delays of spreading.
func (c Config) drain() time.Duration {
	return (30 + 5*time.Duration(c.Layers)) * c.Delay.Mean
}

// successors returns k as the graph uses it.
func (c Config) successors() int {
	if c.Topology == FullMesh {
		return (c.Relays + c.Layers - 1) / c.Layers
	}
	return c.Successors
}
