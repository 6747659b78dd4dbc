package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/strata-mix/strata/mailbox"
	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// MailboxConfig is a mailbox node's config file (TOML).
type MailboxConfig struct {
	Identity string `toml:"identity"`
	// DataDir holds the mix keys, the replay database and the message
	// store (mailbox.db).
	DataDir string   `toml:"data_dir"`
	Listen  []string `toml:"listen"`
	// Announce: as in RelayConfig, the multiaddrs the node registers.
	Announce []string `toml:"announce"`
	Metrics  string   `toml:"metrics"`
	// MetricsListener: as in RelayConfig.
	MetricsListener net.Listener `toml:"-"`
	// Chain is where the node registers (role mailbox) and reads epochs.
	Chain         *ChainConfig `toml:"chain"`
	ChainInterval string       `toml:"chain_interval"`
	// Retention (Go duration, default 168h), MaxMessages and MaxBytes are
	// the store's limits per mailbox.
	Retention   string `toml:"retention"`
	MaxMessages int    `toml:"max_messages"`
	MaxBytes    int64  `toml:"max_bytes"`
	// MaxRate sizes the replay database (packets/s, default 5,000) over
	// EpochLength (default 1h).
	MaxRate     int    `toml:"max_rate"`
	EpochLength string `toml:"epoch_length"`
	// AllowNoise also offers and accepts libp2p Noise (X25519) on TCP
	// links, after TLS 1.3. Default false: links use only TLS 1.3 (TCP)
	// and QUIC, both with the hybrid post-quantum X25519MLKEM768 key
	// exchange. Noise is classical, and libp2p picks the security protocol
	// in the clear, so with it enabled an on-path attacker can downgrade
	// this node's links to peers that also allow Noise to classical X25519,
	// which a future quantum computer breaks (A11, P10). Enable only to
	// reach peers that cannot speak TLS.
	AllowNoise bool `toml:"allow_classical_noise"`
}

// LoadMailboxConfig reads a mailbox node's config file; unknown keys are
// errors.
func LoadMailboxConfig(path string) (*MailboxConfig, error) {
	var c MailboxConfig
	if err := loadTOML(path, "mailbox", &c); err != nil {
		return nil, err
	}
	return &c, c.check()
}

func (c *MailboxConfig) check() error {
	if c.Identity == "" || c.DataDir == "" || c.Chain == nil {
		return errors.New("node: mailbox config needs identity, data_dir and a [chain] section")
	}
	if err := c.Chain.check(); err != nil {
		return err
	}
	if err := checkAnnounce(c.Announce); err != nil {
		return err
	}
	if c.MaxMessages < 0 || c.MaxBytes < 0 || c.MaxRate < 0 {
		return errors.New("node: mailbox config: negative limit")
	}
	for name, v := range map[string]string{"retention": c.Retention, "chain_interval": c.ChainInterval, "epoch_length": c.EpochLength} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return fmt.Errorf("node: mailbox config: %s %q: want a positive duration", name, v)
		}
	}
	return nil
}

func duration(s string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d
	}
	return def
}

// RunMailbox runs a mailbox node until ctx ends: it registers in the PKI as
// a mailbox, receives DeliverMailbox packets through a relay pipeline
// (unwrap, replay check; it forwards nothing), executes the requests they
// carry and answers through SURBs.
func RunMailbox(ctx context.Context, cfg *MailboxConfig, log *slog.Logger) error {
	if cfg.MetricsListener != nil {
		defer cfg.MetricsListener.Close() // served or not
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	identity, err := transport.LoadIdentity(cfg.Identity)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	format, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		return err
	}
	rate := cfg.MaxRate
	if rate == 0 {
		rate = 5000
	}
	db, err := relay.OpenReplayDB(filepath.Join(cfg.DataDir, "replay"), 3*rate*int(duration(cfg.EpochLength, time.Hour)/time.Second))
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := mailbox.OpenStore(filepath.Join(cfg.DataDir, "mailbox.db"), mailbox.Config{
		Retention: duration(cfg.Retention, 7*24*time.Hour), MaxMessages: cfg.MaxMessages, MaxBytes: cfg.MaxBytes,
	})
	if err != nil {
		return err
	}
	defer store.Close()

	var r atomic.Pointer[relay.Relay]
	host, err := transport.New(ctx, transport.Config{
		Identity: identity, PacketSize: format.Geometry().PacketSize(), ListenAddrs: cfg.Listen,
		Handler: func(from transport.NodeID, pkt []byte) {
			if rr := r.Load(); rr != nil {
				rr.HandlePacket(sphinx.NodeID(from), pkt)
			}
		},
		Security:   transport.NodeSecurity(cfg.AllowNoise),
		Registerer: reg, Logger: log,
	})
	if err != nil {
		return err
	}
	defer host.Close()
	// The membership's work (and its light-client store) ends before
	// RunMailbox returns, so the data directory can be reopened at once.
	mctx, stop := context.WithCancel(ctx)
	member, err := StartMembership(mctx, MembershipConfig{
		Chain: *cfg.Chain, Identity: identity, Role: pki.RoleMailbox, DataDir: cfg.DataDir,
		Host: host, Interval: duration(cfg.ChainInterval, time.Second), Announce: cfg.Announce, Logger: log,
	})
	if err != nil {
		stop()
		return err
	}
	defer func() { stop(); <-member.Done() }()
	log.Info("waiting for the chain's topology", "rpc", cfg.Chain.Endpoints())
	top, err := member.Wait(ctx, func(*pki.Topology) bool { return true })
	if err != nil {
		return fmt.Errorf("node: chain: %w", err)
	}
	var epoch atomic.Uint64
	epoch.Store(top.Epoch)
	// The mailbox node's routes: DeliverMailbox and Drop packets only from
	// last-stratum relays, nothing forwarded; its pool: the first stratum.
	rt := newRouting(host, log)
	rt.startChain(ctx, member, top)
	keys, err := member.Keys(top.Epoch)
	if err != nil {
		return err
	}
	keyring, err := relay.NewKeyring(top.Epoch, keys...)
	if err != nil {
		return err
	}
	// The node sends only into the first stratum of the epochs its routes
	// hold (the current one and, also right after a start mid-epoch, the
	// previous one: startChain reads it), and never waits on a link:
	// replies and its loop cover leave through mb's one send path
	// (mailbox/send.go). For a mailbox node the routes' MaySend is exactly
	// that first stratum, and the send pool holds exactly those nodes.
	mb, err := mailbox.NewNode(mailbox.NodeConfig{
		Store: store, Format: format, Epoch: epoch.Load, Registerer: reg, Logger: log,
		FirstHop: rt.routes.MaySend,
		Send: func(_ context.Context, to sphinx.NodeID, pkt []byte) error {
			return host.TrySend(transport.NodeID(to), pkt)
		},
	})
	if err != nil {
		return err
	}
	// Loop cover at the network's λM, as a relay sends (docs/mailbox.md):
	// at the first stratum the node's replies hide among its loops.
	var current atomic.Pointer[relay.View]
	cover, err := relay.NewCover(format, sphinx.Hop{ID: sphinx.NodeID(host.ID()), Key: keys[0].Key.Public()}, current.Load, mb.SendCover, reg)
	if err != nil {
		return err
	}
	rl, err := relay.New(relay.Config{
		Format: format, Keys: keyring, Delay: sphinx.DelayPolicy{Mean: top.Params.MeanDelay},
		Link:   relay.LinkFunc(func(context.Context, sphinx.NodeID, []byte) error { return errors.New("mailbox nodes do not forward") }),
		Replay: db, NoForward: true, Routes: rt.routes, Local: relay.Local{Mailbox: mb.Handle, Loop: cover.Returned},
		Registerer: reg, Logger: log,
	})
	if err != nil {
		return err
	}
	defer rl.Close()
	r.Store(rl)
	if cfg.Metrics != "" || cfg.MetricsListener != nil {
		stop, err := serveMetrics(cfg.Metrics, cfg.MetricsListener, reg, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	log.Info("mailbox up", "id", sphinx.NodeID(host.ID()), "addrs", host.Addrs(), "epoch", top.Epoch)
	go func() { _ = mb.Run(ctx) }()
	go func() { _ = cover.Run(ctx) }()

	// Follow the epochs: keys, replay DB, SURB stock, the routes (the
	// first stratum to send into, peers to answer to), the loops' view.
	followChain(ctx, member, rl, rt, log, func(top *pki.Topology, v *relay.View, newEpoch bool) {
		if newEpoch {
			epoch.Store(top.Epoch)
		}
		current.Store(v)
	})
	return nil
}
