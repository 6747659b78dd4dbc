package sim

import (
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// Packets counts the packets sent after the warmup, by stream.
type Packets struct {
	// Real are payload slots that carried a real message; PayloadCover
	// the payload slots that carried cover because nothing was queued.
	Real, PayloadCover int64
	// Loop and Drop are the clients' loop and drop cover, RelayLoop the
	// relays' loop cover.
	Loop, Drop, RelayLoop int64
}

// Total returns every packet counted.
func (p Packets) Total() int64 { return p.Real + p.Cover() }

// Cover returns the cover packets of every stream.
func (p Packets) Cover() int64 { return p.PayloadCover + p.Loop + p.Drop + p.RelayLoop }

// CoverPerReal returns how many cover packets the network carried for each
// real one: the bandwidth overhead of anonymity. It is +Inf when no real
// packet was sent.
func (p Packets) CoverPerReal() float64 {
	return float64(p.Cover()) / float64(p.Real)
}

// Result is what a run measured.
type Result struct {
	// Config is the configuration that ran, Progress cleared.
	Config Config
	// K is the number of successors each relay linked to.
	K int
	// Corrupt is the number of corrupt relays.
	Corrupt int
	// Entropy summarizes, over the targets that finished, the Shannon
	// entropy in bits of each target's distribution over the messages
	// leaving the last stratum.
	Entropy Summary
	// Targets is the number of targets picked; TargetsUnfinished those
	// whose probability had not all left the network when the run ended
	// (they are not in Entropy).
	Targets, TargetsUnfinished int
	// LostMass is the mean probability per finished target that pools
	// forgot below 1e-9 instead of following it to the exit.
	LostMass float64
	// TargetLifetime is the mean time from a target's sending to the exit
	// of its last probability mass.
	TargetLifetime time.Duration
	// Latency is the end-to-end latency of real messages, from being
	// queued at the sender to leaving the last stratum; MixLatency the
	// part of it spent in mixes (the sum of the per-hop delays).
	Latency, MixLatency Latency
	// Packets counts what the clients and relays sent after the warmup.
	Packets Packets
	// Measured is the simulated time over which Packets were counted.
	Measured time.Duration
	// Events is the number of events the run processed (messages sent
	// and hops left); Wall the wall time it took.
	Events int64
	Wall   time.Duration
}

// ClientBandwidth returns what one client sends, in bytes per second:
// every Loopix stream, real or cover, is a full Sphinx packet.
func (r *Result) ClientBandwidth() float64 {
	c := r.Config
	return (c.LambdaP + c.LambdaL + c.LambdaD) * float64(sphinx.DefaultGeometry().PacketSize())
}

// LinkBytesPerReal returns the bytes all links carried per real message
// delivered: every packet crosses Layers+1 links (client to the first
// stratum, between strata, and out of the last).
func (r *Result) LinkBytesPerReal() float64 {
	hops := float64(r.Config.Layers + 1)
	return float64(r.Packets.Total()) * hops * float64(sphinx.DefaultGeometry().PacketSize()) / float64(r.Packets.Real)
}

// EventsPerSecond returns how fast the run went.
func (r *Result) EventsPerSecond() float64 {
	return float64(r.Events) / r.Wall.Seconds()
}
