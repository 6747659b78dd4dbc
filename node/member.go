package node

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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
	// It is the first endpoint; configs with one endpoint need only it.
	RPC string `toml:"rpc"`
	// RPCs are more endpoints, in order of preference after RPC. The node
	// reads through the first that answers, fails over to the next, and
	// every other endpoint serves as a witness of the light client.
	RPCs []string `toml:"rpcs"`
	// Witnesses are extra endpoints used only as witnesses.
	Witnesses []string `toml:"witnesses"`
	// TrustHeight and TrustHash (hex) are the root of trust, as
	// `strata validator start` prints it. They may be left out once the
	// node's light-client store holds a trusted header within the trust
	// period (the node then resumes from it).
	TrustHeight int64  `toml:"trust_height"`
	TrustHash   string `toml:"trust_hash"`
	// TrustPeriod (a Go duration, default "168h") is how long a verified
	// header stays a root of trust: a node that verified nothing for
	// longer refuses to start until it is given a fresh trust root. It
	// must be shorter than the chain's unbonding period.
	TrustPeriod string `toml:"trust_period"`
}

// trustPeriod is TrustPeriod parsed (0 for the default); check validates it.
func (c *ChainConfig) trustPeriod() time.Duration {
	d, _ := time.ParseDuration(c.TrustPeriod)
	return d
}

// Endpoints returns RPC followed by RPCs, without repeats.
func (c *ChainConfig) Endpoints() []string {
	var out []string
	for _, e := range append([]string{c.RPC}, c.RPCs...) {
		if e != "" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// Check validates the chain section: at least one endpoint, every
// endpoint an http://, https:// or tcp:// URL, and a trust root that is
// either absent (the light client's store must then hold one) or a height
// > 0 with a 32-byte hex hash.
func (c *ChainConfig) Check() error { return c.check() }

func (c *ChainConfig) check() error {
	eps := c.Endpoints()
	if len(eps) == 0 {
		return errors.New("node: [chain] needs an RPC endpoint (rpc or rpcs)")
	}
	for _, e := range append(eps, c.Witnesses...) {
		if err := checkEndpoint(e); err != nil {
			return fmt.Errorf("node: [chain]: %w", err)
		}
	}
	if d, err := time.ParseDuration(c.TrustPeriod); c.TrustPeriod != "" && (err != nil || d <= 0) {
		return fmt.Errorf("node: [chain] trust_period %q: want a positive duration", c.TrustPeriod)
	}
	if c.TrustHeight == 0 && c.TrustHash == "" {
		return nil // resumed from the light-client store, or refused there
	}
	if c.TrustHeight <= 0 {
		return errors.New("node: [chain] trust_height must be > 0 when trust_hash is set")
	}
	if _, err := parseHex32(c.TrustHash); err != nil {
		return fmt.Errorf("node: [chain] trust_hash: %w", err)
	}
	return nil
}

// checkEndpoint accepts http://, https:// and tcp:// URLs with a host.
func checkEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "tcp") {
		return fmt.Errorf("RPC endpoint %q: want http://, https:// or tcp://host:port", e)
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
	watch  *chainWatch
	log    *slog.Logger

	keyMu sync.Mutex // serializes making mix keys: one key per epoch, ever

	done chan struct{} // closed once the work has stopped and the light client's store is closed

	mu      sync.Mutex
	current *pki.Topology
	changed chan struct{} // closed and replaced when current changes
}

// StartMembership registers the node and starts following the chain; the
// work runs until ctx ends. The light client keeps its trusted headers in
// <DataDir>/light, so a restart within the trust period resumes from the
// last verified header.
func StartMembership(ctx context.Context, cfg MembershipConfig) (*Membership, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v, err := openVerifier(ctx, cfg.Chain, filepath.Join(cfg.DataDir, LightDir), log)
	if err != nil {
		return nil, err
	}
	chainID := v.Chain().ChainID()
	pki.ServeProbe(cfg.Host.LibP2P(), cfg.Identity, chainID)
	m := &Membership{
		cfg: cfg, self: sphinx.NodeID(cfg.Host.ID()), verify: v, cache: pki.NewTopologyCache(v),
		watch: newChainWatch(log), log: log, changed: make(chan struct{}), done: make(chan struct{}),
	}
	addrs, err := m.addrsToRegister(ctx)
	if err != nil {
		v.Close()
		return nil, err
	}
	m.agent, err = pki.NewAgent(pki.AgentConfig{
		Chain: v.Chain(), Identity: cfg.Identity, Role: cfg.Role, Addrs: addrs,
		MixKey: m.mixKey, Interval: cfg.Interval, Logger: log,
	})
	if err != nil {
		v.Close()
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Go(func() { m.register(ctx) })
	wg.Go(func() { m.follow(ctx) })
	go func() {
		defer close(m.done)
		wg.Wait()
		if err := v.Close(); err != nil {
			log.Warn("closing the light client's store", "err", err)
		}
	}()
	return m, nil
}

// register runs the PKI agent's step every Interval until ctx ends; a
// failing step is logged once until it works again (chainWatch).
func (m *Membership) register(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		_, err := m.agent.Step(ctx)
		if ctx.Err() != nil {
			return
		}
		m.watch.result("registration", err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
		err := m.cache.Refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		if top := m.cache.Current(); err == nil && top != nil {
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

// Done is closed once ctx has ended, the membership's work has stopped and
// the light client's store is closed (a node restarted in the same process
// waits for it).
func (m *Membership) Done() <-chan struct{} { return m.done }

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
