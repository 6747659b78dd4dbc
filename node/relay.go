package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// RelayConfig is a relay's config file (TOML). Paths are relative to the
// working directory.
type RelayConfig struct {
	// Identity is the identity key file made by `strata keygen`.
	Identity string `toml:"identity"`
	// DataDir holds the mix keys and the replay database.
	DataDir string `toml:"data_dir"`
	// Listen are libp2p multiaddrs; default TCP and QUIC on loopback.
	Listen []string `toml:"listen"`
	// Announce are the multiaddrs the relay registers in the PKI, exactly
	// (canonical, no /p2p, at most 8): set it when the relay listens on
	// 0.0.0.0 or behind NAT. Default: the listen addresses as the host
	// resolves them, minus unspecified ones and, on a chain that takes only
	// public addresses, minus non-public ones (docs/relay.md).
	Announce []string `toml:"announce"`
	// Metrics is the host:port of the Prometheus endpoint; empty: none.
	Metrics string `toml:"metrics"`
	// MetricsListener, if set, serves the metrics instead of binding
	// Metrics: a caller that picks free ports (the testnet) binds them
	// first, so no other process can take the port meanwhile. The node
	// closes it when it stops.
	MetricsListener net.Listener `toml:"-"`
	// Chain is where the relay registers and reads its epochs: the PKI.
	Chain *ChainConfig `toml:"chain"`
	// ChainInterval is how often the chain is read (Go duration); default 1s.
	ChainInterval string `toml:"chain_interval"`
	// Topology is a static topology file, used instead of the chain (tests,
	// networks without a PKI); re-read every few seconds so that a new
	// epoch takes effect without a restart.
	Topology string `toml:"topology"`
	// SchedulerCapacity bounds the delayed packets held; 0: default.
	SchedulerCapacity int `toml:"scheduler_capacity"`
	// MaxRate (packets/s) and EpochLength size the replay database:
	// 3 epochs × EpochLength × MaxRate tags. Defaults 20,000/s and 1h.
	MaxRate     int    `toml:"max_rate"`
	EpochLength string `toml:"epoch_length"`
	// InjectLoss drops this fraction of received packets at random, before
	// any processing (counted in strata_relay_injected_loss_total): a
	// lossy network for demonstrations and tests (strata testnet --loss).
	// Never set it on a real relay.
	InjectLoss float64 `toml:"inject_loss"`
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

// LoadRelayConfig reads a relay config file; unknown keys are errors.
func LoadRelayConfig(path string) (*RelayConfig, error) {
	var c RelayConfig
	if err := loadTOML(path, "relay", &c); err != nil {
		return nil, err
	}
	return &c, c.check()
}

// loadTOML decodes the TOML file at path into v; unknown keys are errors.
func loadTOML(path, kind string, v any) error {
	md, err := toml.DecodeFile(path, v)
	if err != nil {
		return fmt.Errorf("node: %s config %s: %w", kind, path, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return fmt.Errorf("node: %s config %s: unknown key %q", kind, path, un[0].String())
	}
	return nil
}

func (c *RelayConfig) check() error {
	if c.Identity == "" || c.DataDir == "" {
		return errors.New("node: relay config needs identity and data_dir")
	}
	switch {
	case c.Chain == nil && c.Topology == "":
		return errors.New("node: relay config needs a [chain] section or a topology file")
	case c.Chain != nil && c.Topology != "":
		return errors.New("node: relay config has both [chain] and topology; choose one")
	case c.Chain != nil:
		if err := c.Chain.check(); err != nil {
			return err
		}
	case len(c.Announce) > 0:
		return errors.New("node: relay config: announce is for the [chain]; a static topology file names the addresses itself")
	}
	if err := checkAnnounce(c.Announce); err != nil {
		return err
	}
	if c.ChainInterval != "" {
		if d, err := time.ParseDuration(c.ChainInterval); err != nil || d <= 0 {
			return fmt.Errorf("node: relay config: chain_interval %q: want a positive duration", c.ChainInterval)
		}
	}
	if c.InjectLoss < 0 || c.InjectLoss >= 1 || c.InjectLoss != c.InjectLoss {
		return fmt.Errorf("node: relay config: inject_loss %v: want a fraction in [0, 1)", c.InjectLoss)
	}
	if c.MaxRate < 0 || c.SchedulerCapacity < 0 {
		return errors.New("node: relay config: negative max_rate or scheduler_capacity")
	}
	if c.EpochLength != "" {
		if d, err := time.ParseDuration(c.EpochLength); err != nil || d <= 0 {
			return fmt.Errorf("node: relay config: epoch_length %q: want a positive duration", c.EpochLength)
		}
	}
	return nil
}

func (c *RelayConfig) chainInterval() time.Duration {
	d, _ := time.ParseDuration(c.ChainInterval)
	return d
}

func (c *RelayConfig) replayCap() int {
	rate, length := c.MaxRate, time.Hour
	if rate == 0 {
		rate = 20_000
	}
	if c.EpochLength != "" {
		length, _ = time.ParseDuration(c.EpochLength)
	}
	return 3 * rate * int(length/time.Second)
}

// RunRelay runs a relay until ctx ends: transport, pipeline, loop cover,
// metrics endpoint, and its epochs — from the PKI chain when the config has
// a [chain] section, else from the static topology file.
func RunRelay(ctx context.Context, cfg *RelayConfig, log *slog.Logger) error {
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
	var static *Epoch
	if cfg.Chain == nil {
		if static, err = LoadStaticTopology(cfg.Topology); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	format, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		return err
	}
	db, err := relay.OpenReplayDB(cfg.DataDir+"/replay", cfg.replayCap())
	if err != nil {
		return err
	}
	defer db.Close()

	var (
		r    atomic.Pointer[relay.Relay]
		home atomic.Pointer[client.Home]
	)
	injected := prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_injected_loss_total",
		Help: "Packets dropped on purpose by inject_loss (demonstrations only)."})
	notReady := prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_not_ready_total",
		Help: "Packets dropped because they arrived before the relay had its first topology and keys."})
	reg.MustRegister(injected, notReady)
	host, err := transport.New(ctx, transport.Config{
		Identity: identity, PacketSize: format.Geometry().PacketSize(), ListenAddrs: cfg.Listen,
		Handler: func(from transport.NodeID, pkt []byte) {
			if cfg.InjectLoss > 0 && mrand.Float64() < cfg.InjectLoss {
				injected.Inc()
				return
			}
			if rr := r.Load(); rr != nil {
				rr.HandlePacket(sphinx.NodeID(from), pkt)
			} else {
				notReady.Inc()
			}
		},
		// Every connected node may be a client for which this relay is
		// home (see client.Home).
		Connected: func(id transport.NodeID) {
			if h := home.Load(); h != nil {
				h.Connected(id)
			}
		},
		Disconnected: func(id transport.NodeID) {
			if h := home.Load(); h != nil {
				h.Disconnected(id)
			}
		},
		// Clients send every packet through their home, which forwards
		// it into the first stratum (client.Home.Entry).
		Entry: func(from, next transport.NodeID, pkt []byte) {
			if h := home.Load(); h != nil {
				h.Entry(from, next, pkt)
			}
		},
		Security:   transport.NodeSecurity(cfg.AllowNoise),
		Registerer: reg, Logger: log,
	})
	if err != nil {
		return err
	}
	defer host.Close()
	self := sphinx.NodeID(host.ID())
	// The restricted routes of the epochs held, and the send pool they
	// allow (node/routes.go).
	rt := newRouting(host, log)

	// The epoch source: the chain or the file.
	var (
		member *Membership
		epoch  uint64
		delay  sphinx.DelayPolicy
		keys   []relay.EpochKey
		homeAt client.HomeEpoch // what the home needs of the first topology
	)
	if cfg.Chain != nil {
		// The membership's work (and its light-client store) ends before
		// RunRelay returns, so the data directory can be reopened at once.
		mctx, stop := context.WithCancel(ctx)
		member, err = StartMembership(mctx, MembershipConfig{
			Chain: *cfg.Chain, Identity: identity, Role: pki.RoleRelay, DataDir: cfg.DataDir,
			Host: host, Interval: cfg.chainInterval(), Announce: cfg.Announce, Logger: log,
		})
		if err != nil {
			stop()
			return err
		}
		defer func() { stop(); <-member.Done() }()
		// The network's parameters (the delay policy among them) come with
		// the first verified topology; the relay registers meanwhile.
		log.Info("waiting for the chain's topology", "rpc", cfg.Chain.Endpoints())
		top, err := member.Wait(ctx, func(*pki.Topology) bool { return true })
		if err != nil {
			return fmt.Errorf("node: chain: %w", err)
		}
		epoch, delay = top.Epoch, sphinx.DelayPolicy{Mean: top.Params.MeanDelay}
		if keys, err = member.Keys(epoch); err != nil {
			return err
		}
		rt.startChain(ctx, member, top)
		homeAt = client.HomeEpochOf(top)
	} else {
		homeAt = homeEpochOfView(static.View)
		rt.update(static.View, staticPeers(static))
		epoch, delay = static.Number, static.Delay
		if keys, err = epochKeys(cfg.DataDir, epoch); err != nil {
			return err
		}
		if _, ok := static.MixKeys[self]; !ok {
			return fmt.Errorf("node: the topology has no mix key of this relay (%v) for epoch %d", self, epoch)
		}
	}
	keyring, err := relay.NewKeyring(epoch, keys...)
	if err != nil {
		return err
	}
	injectSelf := func(pkt []byte) error {
		if rr := r.Load(); rr != nil {
			return rr.Inject(pkt)
		}
		return relay.ErrBusy
	}
	hm, err := client.NewHome(client.HomeConfig{Host: host, Geometry: format.Geometry(), Epoch: homeAt,
		Inject: injectSelf, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	home.Store(hm)

	var current atomic.Pointer[relay.View]
	if static != nil {
		current.Store(static.View)
	}
	// A loop may pass through this relay's own stratum: packets to self
	// stay in the process. The link never waits and sends only where the
	// routes allow.
	link := relayLink(self, rt.routes, host, injectSelf)
	cover, err := relay.NewCover(format, sphinx.Hop{ID: self, Key: keys[0].Key.Public()}, current.Load, link.Send, reg)
	if err != nil {
		return err
	}
	rl, err := relay.New(relay.Config{
		Format: format, Keys: keyring, Delay: delay, Link: link, Replay: db, Routes: rt.routes,
		SchedulerCapacity: cfg.SchedulerCapacity, Local: relay.Local{Loop: cover.Returned, Client: hm.Deliver},
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
	log.Info("relay up", "id", self, "addrs", host.Addrs(), "epoch", epoch)
	go cover.Run(ctx)
	if member != nil {
		followChain(ctx, member, rl, rt, log, func(top *pki.Topology, v *relay.View, newEpoch bool) {
			hm.SetTopology(client.HomeEpochOf(top))
			current.Store(v)
		})
		return nil
	}
	watchTopology(ctx, cfg, &current, rl, hm, rt, log)
	return nil
}

// followChain switches the node's pipeline to each verified topology the
// chain publishes until ctx ends: its routes and send pool (rt) and, at an
// epoch change, the epoch's mix keys (the replay database rotates with
// them). Then it calls update, if not nil, with the topology, its view,
// and whether the pipeline just moved to a new epoch.
func followChain(ctx context.Context, m *Membership, rl *relay.Relay, rt *routing, log *slog.Logger, update func(top *pki.Topology, v *relay.View, newEpoch bool)) {
	epoch := ^uint64(0)
	for {
		top, changed := m.Current()
		if top != nil {
			v := view(top)
			rt.update(v, topologyPeers(top))
			newEpoch := false
			if top.Epoch != epoch {
				keys, err := m.Keys(top.Epoch)
				if err == nil {
					err = rl.SetEpoch(top.Epoch, keys...)
				}
				if err != nil {
					log.Warn("epoch change", "epoch", top.Epoch, "err", err)
				} else {
					epoch, newEpoch = top.Epoch, true
					log.Info("epoch", "epoch", epoch, "relays", len(top.Relays), "mailboxes", len(top.Mailboxes))
				}
			}
			if update != nil {
				update(top, v, newEpoch)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// epochKeys loads the relay's mix keys for epoch and, if present, the
// previous one (its grace period).
func epochKeys(dataDir string, epoch uint64) ([]relay.EpochKey, error) {
	cur, err := LoadMixKey(dataDir, epoch)
	if err != nil {
		return nil, err
	}
	keys := []relay.EpochKey{{Epoch: epoch, Key: cur}}
	if epoch > 0 {
		if prev, err := LoadMixKey(dataDir, epoch-1); err == nil {
			keys = append(keys, relay.EpochKey{Epoch: epoch - 1, Key: prev})
		}
	}
	return keys, nil
}

// watchTopology re-reads the topology file until ctx ends and switches the
// relay to each new epoch it announces.
func watchTopology(ctx context.Context, cfg *RelayConfig, current *atomic.Pointer[relay.View], rl *relay.Relay, hm *client.Home, rt *routing, log *slog.Logger) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var lastMod time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := os.Stat(cfg.Topology)
		if err != nil || !st.ModTime().After(lastMod) {
			continue
		}
		lastMod = st.ModTime()
		next, err := LoadStaticTopology(cfg.Topology)
		if err != nil {
			log.Warn("topology reload", "err", err)
			continue
		}
		if next.Number != current.Load().Epoch {
			keys, err := epochKeys(cfg.DataDir, next.Number)
			if err != nil {
				log.Warn("new epoch without a mix key; staying", "epoch", next.Number, "err", err)
				continue
			}
			if err := rl.SetEpoch(next.Number, keys...); err != nil {
				log.Warn("epoch change", "err", err)
				continue
			}
			log.Info("epoch change", "epoch", next.Number)
		}
		hm.SetTopology(homeEpochOfView(next.View))
		rt.update(next.View, staticPeers(next))
		current.Store(next.View)
	}
}

// homeEpochOfView is what the home needs of a static topology: its first
// stratum, and the default client rates (a topology file names none).
func homeEpochOfView(v *relay.View) client.HomeEpoch {
	p := pki.DefaultParams()
	e := client.HomeEpoch{Epoch: v.Epoch, Rates: client.Rates{Payload: p.LambdaP, Loop: p.LambdaL, Drop: p.LambdaD}}
	if v.Graph != nil && len(v.Graph.Layers) > 0 {
		e.FirstStratum = v.Graph.Layers[0]
	}
	return e
}

// serveMetrics serves reg at /metrics on ln, or if it is nil on addr.
func serveMetrics(addr string, ln net.Listener, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("node: metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { srv.Close() }, nil
}
