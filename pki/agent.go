package pki

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// AgentConfig configures a node's chain duties.
type AgentConfig struct {
	// Chain is where the agent reads and sends. Required.
	Chain Chain
	// Identity is the node's Ed25519 identity key. Required.
	Identity ed25519.PrivateKey
	// Role is RoleRelay or RoleMailbox. Required.
	Role Role
	// Addrs are the libp2p addresses the intention registers, where the
	// node answers probes (see ServeProbe). Required.
	Addrs []string
	// MixKey returns the node's public mix key for an epoch; the node keeps
	// the private halves. It must return the same key for an epoch every
	// time. Required.
	MixKey func(epoch uint64) (sphinx.PublicKey, error)
	// Interval is how often the agent checks the chain. Default 1s.
	Interval time.Duration
	// Logger receives the agent's logs. Default: discarded.
	Logger *slog.Logger
}

// Agent does a relay's or mailbox's part in the PKI: it sends the
// intention (with its proof of work), keeps mix keys published for the
// epochs ahead, and, for an admitted relay, submits the VRF on each new
// beacon. Validators do the rest.
type Agent struct {
	cfg    AgentConfig
	id     sphinx.NodeID
	params *Params
	reg    registering
}

// NewAgent checks cfg and returns an agent.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	switch {
	case cfg.Chain == nil, cfg.MixKey == nil:
		return nil, errors.New("pki: agent: Chain and MixKey are required")
	case len(cfg.Identity) != ed25519.PrivateKeySize:
		return nil, errors.New("pki: agent: Identity is not an Ed25519 private key")
	case cfg.Role != RoleRelay && cfg.Role != RoleMailbox:
		return nil, fmt.Errorf("pki: agent: role %v", cfg.Role)
	case len(cfg.Addrs) == 0:
		return nil, errors.New("pki: agent: no addresses")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pub := cfg.Identity.Public().(ed25519.PublicKey)
	a := &Agent{cfg: cfg, id: NodeIDOf(pub)}
	cfg.Logger = cfg.Logger.With("node", a.id, "role", cfg.Role)
	a.cfg = cfg
	return a, nil
}

// NodeIDOf is the node id of an Ed25519 identity key: SHA-256 of its 32
// bytes, as in transport.
func NodeIDOf(pub ed25519.PublicKey) sphinx.NodeID {
	return sphinx.NodeID(sha256Sum(pub))
}

// Run does Step every Interval until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := a.Step(ctx); err != nil && ctx.Err() == nil {
			a.cfg.Logger.Info("pki agent", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Step reads the chain once and sends what is missing: the intention,
// mix keys, the VRF. It returns the node as the chain last showed it (nil
// before registration).
func (a *Agent) Step(ctx context.Context) (*NodeView, error) {
	ch := a.cfg.Chain
	if a.params == nil {
		raw, _, err := ch.Query(ctx, QueryParams)
		if err != nil {
			return nil, err
		}
		var p Params
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("pki: params: %w", err)
		}
		a.params = &p
	}
	raw, _, err := ch.Query(ctx, QueryEpoch)
	if err != nil {
		return nil, err
	}
	ei, err := DecodeEpochInfo(raw)
	if err != nil {
		return nil, err
	}
	raw, _, err = ch.Query(ctx, QueryNode+"/"+hex.EncodeToString(a.id[:]))
	if errors.Is(err, ErrNotFound) {
		return nil, a.register(ctx)
	}
	if err != nil {
		return nil, err
	}
	var v NodeView
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("pki: node view: %w", err)
	}
	if err := a.publishKeys(ctx, ei, &v); err != nil {
		return &v, err
	}
	if a.cfg.Role == RoleRelay && v.Status == StatusAdmitted.String() && (!v.HasVRF || v.VRFEpoch != ei.Epoch) {
		vrf, err := ProveVRF(a.cfg.Identity, ei.Beacon)
		if err != nil {
			return &v, err
		}
		// Admitted after the freeze: the chain refuses the VRF until the
		// next epoch, and this relay is placed at its withheld key.
		if err := a.send(ctx, ei.Epoch, vrf); err != nil && CodeOf(err) != CodeLateVRF {
			return &v, err
		}
	}
	return &v, nil
}

// publishKeys sends the mix keys of the publication window that the chain
// lacks, in one transaction from the first missing epoch to the end of
// the window (keys already published are sent again unchanged).
func (a *Agent) publishKeys(ctx context.Context, ei EpochInfo, v *NodeView) error {
	lo := ei.Epoch + 1
	if ei.Epoch == 0 {
		lo = 0
	}
	hi := ei.Epoch + a.params.KeysAhead
	first := hi + 1
	for e := lo; e <= hi; e++ {
		if !slices.Contains(v.KeyEpochs, e) {
			first = e
			break
		}
	}
	if first > hi {
		return nil
	}
	mk := &MixKeys{First: first}
	for e := first; e <= hi; e++ {
		k, err := a.cfg.MixKey(e)
		if err != nil {
			return fmt.Errorf("pki: mix key of epoch %d: %w", e, err)
		}
		mk.Keys = append(mk.Keys, k)
	}
	return a.send(ctx, ei.Epoch, mk)
}

func (a *Agent) send(ctx context.Context, epoch uint64, body Body) error {
	tx, err := SignTx(a.cfg.Chain.ChainID(), epoch, a.cfg.Identity, body)
	if err != nil {
		return err
	}
	// A transaction already in the mempool comes back as replayed: the
	// chain will apply the first copy.
	if err := asTxError(a.cfg.Chain.BroadcastTx(ctx, tx)); err != nil && CodeOf(err) != CodeReplayed {
		return fmt.Errorf("pki: %v: %w", body.Type(), err)
	}
	return nil
}
