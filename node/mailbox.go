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
	Metrics string   `toml:"metrics"`
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
		Registerer: reg, Logger: log,
	})
	if err != nil {
		return err
	}
	defer host.Close()
	member, err := StartMembership(ctx, MembershipConfig{
		Chain: *cfg.Chain, Identity: identity, Role: pki.RoleMailbox, DataDir: cfg.DataDir,
		Host: host, Interval: duration(cfg.ChainInterval, time.Second), Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info("waiting for the chain's topology", "rpc", cfg.Chain.RPC)
	top, err := member.Wait(ctx, func(*pki.Topology) bool { return true })
	if err != nil {
		return fmt.Errorf("node: chain: %w", err)
	}
	var epoch atomic.Uint64
	epoch.Store(top.Epoch)
	keys, err := member.Keys(top.Epoch)
	if err != nil {
		return err
	}
	keyring, err := relay.NewKeyring(top.Epoch, keys...)
	if err != nil {
		return err
	}
	mb, err := mailbox.NewNode(mailbox.NodeConfig{
		Store: store, Format: format, Epoch: epoch.Load, Registerer: reg, Logger: log,
		Send: func(ctx context.Context, to sphinx.NodeID, pkt []byte) error {
			return host.Send(ctx, transport.NodeID(to), pkt)
		},
	})
	if err != nil {
		return err
	}
	rl, err := relay.New(relay.Config{
		Format: format, Keys: keyring, Delay: sphinx.DelayPolicy{Mean: top.Params.MeanDelay},
		Link:   relay.LinkFunc(func(context.Context, sphinx.NodeID, []byte) error { return errors.New("mailbox nodes do not forward") }),
		Replay: db, NoForward: true, Local: relay.Local{Mailbox: mb.Handle},
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

	// Follow the epochs: keys, replay DB, SURB stock, peers to answer to.
	followChain(ctx, member, rl, host, log, func(top *pki.Topology, _ *relay.View, newEpoch bool) {
		if newEpoch {
			epoch.Store(top.Epoch)
		}
	})
	return nil
}
