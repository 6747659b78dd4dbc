package node

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// ChainConfig says where a node finds the PKI chain and why it may trust
// what it reads there.
type ChainConfig struct {
	// RPC is a validator's CometBFT RPC endpoint ("http://127.0.0.1:26657").
	RPC string `toml:"rpc"`
	// Witnesses are other validators' RPC endpoints the light client
	// cross-checks headers with; default the primary.
	Witnesses []string `toml:"witnesses"`
	// TrustHeight and TrustHash (hex) are the root of trust, as
	// `strata validator start` prints it.
	TrustHeight int64  `toml:"trust_height"`
	TrustHash   string `toml:"trust_hash"`
}

func (c *ChainConfig) check() error {
	if c.RPC == "" || c.TrustHeight <= 0 || len(c.TrustHash) != 64 {
		return errors.New("node: [chain] needs rpc, trust_height > 0 and trust_hash (64 hex digits)")
	}
	if _, err := parseHex32(c.TrustHash); err != nil {
		return fmt.Errorf("node: [chain] trust_hash: %w", err)
	}
	return nil
}

// MembershipConfig configures a node's part in the PKI.
type MembershipConfig struct {
	Chain    ChainConfig
	Identity ed25519.PrivateKey
	Role     pki.Role
	// DataDir holds the mix keys, <DataDir>/mix/<epoch>.key.
	DataDir string
	// Host is the node's transport host: the probe answer is mounted on
	// it and its addresses are registered.
	Host *transport.Host
	// Interval is how often the chain is read; default 1s.
	Interval time.Duration
	// Announce, if set, are exactly the multiaddrs the node registers;
	// else it registers the host's addresses (see registeredAddrs).
	Announce []string
	Logger   *slog.Logger
}

// Membership keeps a relay or mailbox node registered in the PKI — its
// intention, its mix keys published ahead (kept on disk, deleted once their
// epoch and its grace epoch are over), its VRF on every beacon — and
// follows the verified topology of the current epoch.
type Membership struct {
	cfg    MembershipConfig
	self   sphinx.NodeID
	verify *pki.Verifier
	cache  *pki.TopologyCache
	agent  *pki.Agent
	log    *slog.Logger

	keyMu sync.Mutex // serializes making mix keys: one key per epoch, ever

	mu      sync.Mutex
	current *pki.Topology
	changed chan struct{} // closed and replaced when current changes
}

// StartMembership registers the node and starts following the chain; the
// work runs until ctx ends.
func StartMembership(ctx context.Context, cfg MembershipConfig) (*Membership, error) {
	if err := cfg.Chain.check(); err != nil {
		return nil, err
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	trust, _ := parseHex32(cfg.Chain.TrustHash)
	v, err := pki.NewVerifier(ctx, pki.VerifierConfig{
		Primary: cfg.Chain.RPC, Witnesses: cfg.Chain.Witnesses,
		TrustHeight: cfg.Chain.TrustHeight, TrustHash: trust[:], Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: chain: %w", err)
	}
	chainID := v.Chain().ChainID()
	pki.ServeProbe(cfg.Host.LibP2P(), cfg.Identity, chainID)
	m := &Membership{
		cfg: cfg, self: sphinx.NodeID(cfg.Host.ID()), verify: v, cache: pki.NewTopologyCache(v),
		log: log, changed: make(chan struct{}),
	}
	addrs, err := m.addrsToRegister(ctx)
	if err != nil {
		return nil, err
	}
	m.agent, err = pki.NewAgent(pki.AgentConfig{
		Chain: v.Chain(), Identity: cfg.Identity, Role: cfg.Role, Addrs: addrs,
		MixKey: m.mixKey, Interval: cfg.Interval, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	go func() {
		if err := m.agent.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("pki agent stopped", "err", err)
		}
	}()
	go m.follow(ctx)
	return m, nil
}

// mixKey returns the node's public mix key of epoch, making and saving the
// private key first if needed.
func (m *Membership) mixKey(epoch uint64) (sphinx.PublicKey, error) {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	k, err := EnsureMixKey(m.cfg.DataDir, epoch)
	if err != nil {
		return sphinx.PublicKey{}, err
	}
	return k.Public(), nil
}

// follow refreshes the verified topology until ctx ends.
func (m *Membership) follow(ctx context.Context) {
	tick := time.NewTicker(m.cfg.Interval / 2)
	defer tick.Stop()
	for {
		if err := m.cache.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Debug("topology refresh", "err", err)
		} else if top := m.cache.Current(); top != nil {
			m.mu.Lock()
			if m.current == nil || m.current.Hash() != top.Hash() {
				m.current = top
				close(m.changed)
				m.changed = make(chan struct{})
			}
			m.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Epoch returns the chain's current epoch, verified.
func (m *Membership) Epoch(ctx context.Context) (pki.EpochInfo, error) {
	return m.verify.Epoch(ctx)
}

// ChainID returns the chain's id.
func (m *Membership) ChainID() string { return m.verify.Chain().ChainID() }

// Current returns the verified topology of the current epoch (nil before
// the first is known) and a channel closed when it changes.
func (m *Membership) Current() (*pki.Topology, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current, m.changed
}

// Wait returns the first current topology ok accepts, or ctx's error.
func (m *Membership) Wait(ctx context.Context, ok func(*pki.Topology) bool) (*pki.Topology, error) {
	for {
		top, changed := m.Current()
		if top != nil && ok(top) {
			return top, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

// Keys returns the node's private mix keys to accept packets under in
// epoch: epoch's own first, then the previous epoch's (packets in flight
// at the change). It deletes key files of epochs before that.
func (m *Membership) Keys(epoch uint64) ([]relay.EpochKey, error) {
	if _, err := m.mixKey(epoch); err != nil {
		return nil, err
	}
	keys, err := epochKeys(m.cfg.DataDir, epoch)
	if err != nil {
		return nil, err
	}
	if epoch >= 2 {
		if err := pruneMixKeys(m.cfg.DataDir, epoch-1); err != nil {
			m.log.Warn("pruning old mix keys", "err", err)
		}
	}
	return keys, nil
}

// pruneMixKeys deletes the mix keys of epochs before keep: SURBs made
// under them are dead, and a key that no longer exists cannot be stolen.
func pruneMixKeys(dataDir string, keep uint64) error {
	dir := filepath.Join(dataDir, "mix")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".key"), 10, 64)
		if err != nil || !strings.HasSuffix(e.Name(), ".key") || n >= keep {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// view turns a verified topology into what a relay's cover traffic and
// routes need (relay.View).
func view(top *pki.Topology) *relay.View {
	keys := make(map[sphinx.NodeID]sphinx.PublicKey, len(top.Relays)+len(top.Mailboxes))
	mailboxes := make([]sphinx.NodeID, 0, len(top.Mailboxes))
	for _, r := range top.Relays {
		keys[r.ID] = r.MixKey
	}
	for _, mb := range top.Mailboxes {
		keys[mb.ID] = mb.MixKey
		mailboxes = append(mailboxes, mb.ID)
	}
	return &relay.View{
		Epoch: top.Epoch, Graph: top.Graph(), Mailboxes: mailboxes, MixKeys: keys,
		Delay: sphinx.DelayPolicy{Mean: top.Params.MeanDelay}, LoopRate: top.Params.LambdaM,
	}
}

// topologyPeers returns the transport addresses of a topology's relays and
// mailbox nodes. Which of them a node adds to its send pool is routing's
// decision: only those its routes let it send to.
func topologyPeers(top *pki.Topology) map[sphinx.NodeID]transport.PeerInfo {
	out := make(map[sphinx.NodeID]transport.PeerInfo, len(top.Relays)+len(top.Mailboxes))
	add := func(n pki.NodeInfo) {
		out[n.ID] = transport.PeerInfo{PublicKey: n.IdentityKey[:], Addrs: n.Addrs}
	}
	for _, r := range top.Relays {
		add(r.NodeInfo)
	}
	for _, mb := range top.Mailboxes {
		add(mb)
	}
	return out
}

// Topology returns the verified topology of epoch (a relay that starts
// during an epoch's grace period reads the previous epoch's, to judge the
// packets still in flight under its keys).
func (m *Membership) Topology(ctx context.Context, epoch uint64) (*pki.Topology, error) {
	return m.verify.Topology(ctx, epoch)
}

// parseHex32 decodes 64 hex digits.
func parseHex32(s string) ([32]byte, error) {
	var out [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return out, errors.New("want 64 hex digits")
	}
	copy(out[:], b)
	return out, nil
}
