package pki

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Params are the network parameters the chain publishes. They are fixed in
// the genesis document (its app_state) and copied into every topology
// document, so relays and clients run with the values the chain agreed on.
type Params struct {
	// EpochBlocks is the length of an epoch in blocks. Default 3600 (an
	// hour of one-second blocks); a testnet uses about a minute.
	EpochBlocks uint64 `json:"epoch_blocks"`
	// TopologyLead is how many blocks before an epoch ends the next
	// epoch's topology is frozen, so that relays and clients fetch it in
	// time. VRFs and mix keys for the next epoch must be on chain before
	// then. Default EpochBlocks/4.
	TopologyLead uint64 `json:"topology_lead"`
	// Layers is the number of strata. Default 3.
	Layers uint32 `json:"layers"`
	// Successors is k, how many relays of the next layer each relay links
	// to. Default 8.
	Successors uint32 `json:"successors"`
	// LambdaP, LambdaL and LambdaD are the clients' Loopix payload, loop and
	// drop rates, LambdaM the relays' loop rate, in packets per second.
	LambdaP float64 `json:"lambda_p"`
	LambdaL float64 `json:"lambda_l"`
	LambdaD float64 `json:"lambda_d"`
	LambdaM float64 `json:"lambda_m"`
	// MeanDelay is the mean per-hop Sphinx delay. Default 50ms.
	MeanDelay time.Duration `json:"mean_delay"`
	// PowBits is the number of leading zero bits the proof of work of an
	// intention needs. Default 20 (about a million SHA-256 evaluations).
	PowBits uint32 `json:"pow_bits"`
	// KeysAhead is how many epochs ahead a node may publish mix keys.
	// Default 4.
	KeysAhead uint64 `json:"keys_ahead"`
	// DropAfter is how many whole epochs an admitted node may go without a
	// quorum of validators seeing it before it is dropped. Default 3.
	DropAfter uint64 `json:"drop_after"`
	// PendingEpochs is how many epochs an intention waits for admission
	// before it is forgotten. Default 2.
	PendingEpochs uint64 `json:"pending_epochs"`
	// MaxPendingPerEpoch caps how many intentions the chain accepts in
	// one epoch; later ones are refused until the next epoch. It bounds
	// the probe work spam can ask of validators. Default 256.
	MaxPendingPerEpoch uint32 `json:"max_pending_per_epoch"`
	// PowStep makes the proof of work adapt to demand: each PowStep
	// intentions accepted in the current epoch raise the bits an
	// intention needs by one (docs/pki.md, "Anti-spam"). 0 keeps the
	// difficulty at PowBits. Default 16.
	PowStep uint32 `json:"pow_step"`
	// PublicAddrsOnly refuses intentions naming loopback, private,
	// link-local, unspecified or multicast addresses, so validators are
	// never made to probe internal networks. On for production chains
	// (the default), off for local testnets.
	PublicAddrsOnly bool `json:"public_addrs_only"`
}

// Defaults of the network parameters.
const (
	DefaultEpochBlocks   = 3600
	DefaultMeanDelay     = 50 * time.Millisecond
	DefaultPowBits       = 20
	DefaultKeysAhead     = 4
	DefaultDropAfter     = 3
	DefaultPendingEpochs = 2
	DefaultMaxPending    = 256
	DefaultPowStep       = 16
	DefaultLambdaP       = 2.0
	DefaultLambdaL       = 0.5
	DefaultLambdaD       = 0.5
	DefaultLambdaM       = 0.5
)

// DefaultParams returns the production parameters.
func DefaultParams() Params {
	return Params{
		EpochBlocks:   DefaultEpochBlocks,
		TopologyLead:  DefaultEpochBlocks / 4,
		Layers:        DefaultLayers,
		Successors:    DefaultSuccessors,
		LambdaP:       DefaultLambdaP,
		LambdaL:       DefaultLambdaL,
		LambdaD:       DefaultLambdaD,
		LambdaM:       DefaultLambdaM,
		MeanDelay:     DefaultMeanDelay,
		PowBits:       DefaultPowBits,
		KeysAhead:     DefaultKeysAhead,
		DropAfter:     DefaultDropAfter,
		PendingEpochs: DefaultPendingEpochs,

		MaxPendingPerEpoch: DefaultMaxPending,
		PowStep:            DefaultPowStep,
		PublicAddrsOnly:    true,
	}
}

// ErrParams reports unusable network parameters.
var ErrParams = errors.New("pki: bad network parameters")

// Validate reports whether p can run a network.
func (p Params) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrParams, fmt.Sprintf(format, args...))
	}
	switch {
	case p.EpochBlocks < 4 || p.EpochBlocks > 1<<32:
		return bad("epoch of %d blocks (4 to 2^32)", p.EpochBlocks)
	case p.TopologyLead < 1 || p.TopologyLead >= p.EpochBlocks:
		return bad("topology lead %d not in 1..%d", p.TopologyLead, p.EpochBlocks-1)
	case p.Layers < 1 || p.Layers > 16:
		return bad("%d layers (1 to 16)", p.Layers)
	case p.Successors < 1 || p.Successors > 1024:
		return bad("k = %d (1 to 1024)", p.Successors)
	case p.MeanDelay < 0 || p.MeanDelay > time.Hour:
		return bad("mean delay %v", p.MeanDelay)
	case p.PowBits > 40:
		return bad("proof of work of %d bits (at most 40)", p.PowBits)
	case p.KeysAhead < 1 || p.KeysAhead > maxKeysPerTx:
		return bad("keys ahead %d (1 to %d)", p.KeysAhead, maxKeysPerTx)
	case p.DropAfter < 1 || p.PendingEpochs < 1:
		return bad("drop after %d, pending epochs %d (both at least 1)", p.DropAfter, p.PendingEpochs)
	case p.MaxPendingPerEpoch < 1 || p.MaxPendingPerEpoch > 1<<20:
		return bad("max pending per epoch %d (1 to 2^20)", p.MaxPendingPerEpoch)
	}
	for _, r := range []float64{p.LambdaP, p.LambdaL, p.LambdaD, p.LambdaM} {
		if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			return bad("Loopix rate %v", r)
		}
	}
	return nil
}

// encode appends the canonical encoding of p (docs/pki.md, "Parameters").
func (p Params) encode(e *enc) {
	e.u64(p.EpochBlocks)
	e.u64(p.TopologyLead)
	e.u32(p.Layers)
	e.u32(p.Successors)
	e.f64(p.LambdaP)
	e.f64(p.LambdaL)
	e.f64(p.LambdaD)
	e.f64(p.LambdaM)
	e.u64(uint64(p.MeanDelay))
	e.u32(p.PowBits)
	e.u64(p.KeysAhead)
	e.u64(p.DropAfter)
	e.u64(p.PendingEpochs)
	e.u32(p.MaxPendingPerEpoch)
	e.u32(p.PowStep)
	if p.PublicAddrsOnly {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

func decodeParams(d *dec) Params {
	var p Params
	p.EpochBlocks = d.u64("epoch blocks")
	p.TopologyLead = d.u64("topology lead")
	p.Layers = d.u32("layers")
	p.Successors = d.u32("successors")
	p.LambdaP = d.f64("lambda P")
	p.LambdaL = d.f64("lambda L")
	p.LambdaD = d.f64("lambda D")
	p.LambdaM = d.f64("lambda M")
	p.MeanDelay = time.Duration(d.u64("mean delay"))
	p.PowBits = d.u32("pow bits")
	p.KeysAhead = d.u64("keys ahead")
	p.DropAfter = d.u64("drop after")
	p.PendingEpochs = d.u64("pending epochs")
	p.MaxPendingPerEpoch = d.u32("max pending per epoch")
	p.PowStep = d.u32("pow step")
	switch b := d.u8("public addrs only"); b {
	case 0, 1:
		p.PublicAddrsOnly = b == 1
	default:
		d.fail("public addrs only is %d (0 or 1)", b)
	}
	if d.err == nil {
		if err := p.Validate(); err != nil {
			d.fail("%v", err)
		}
	}
	return p
}
