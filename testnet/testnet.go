package testnet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"

	"github.com/strata-mix/strata/node"
)

// Config describes a local testnet.
type Config struct {
	// DataDir holds every node's state (validator home, keys, replay
	// databases, stores). Required.
	DataDir string
	// Relays (at least Layers), Mailboxes (at least 1) and Clients (at
	// least 2). Defaults 9, 2, 2.
	Relays, Mailboxes, Clients int
	// Chain parameters: epochs of EpochBlocks blocks of BlockInterval
	// (defaults 120 × 500 ms: a minute), MeanDelay per hop (default 50 ms),
	// Loopix rates (pki defaults unless set).
	EpochBlocks                        uint64
	BlockInterval                      time.Duration
	MeanDelay                          time.Duration
	LambdaP, LambdaL, LambdaD, LambdaM float64
	// Loss is the fraction of packets every relay drops on purpose, to
	// show the network delivering through loss.
	Loss float64
	// DirectPuts sends each demo message as one mailbox Put with an answer
	// SURB, resent with exponential backoff until the node answers — the
	// path before the message queue, kept for comparison. By default
	// messages go through package queue (RaptorQ chunks, end-to-end acks,
	// repair symbols sized to the measured loss).
	DirectPuts bool
	// MessageEvery is how often each demo client sends a message to the
	// next one; 0 sends only what Send asks (the dashboard's box).
	MessageEvery time.Duration
	// Dashboard is the dashboard's listen address ("" for none).
	Dashboard string
	// Logger receives the nodes' logs; default discarded.
	Logger *slog.Logger
	// Progress receives one line per bring-up step; default discarded.
	Progress io.Writer
}

func (c *Config) defaults() error {
	if c.DataDir == "" {
		return errors.New("testnet: DataDir is required")
	}
	if c.Relays == 0 {
		c.Relays = 9
	}
	if c.Mailboxes == 0 {
		c.Mailboxes = 2
	}
	if c.Clients == 0 {
		c.Clients = 2
	}
	if c.EpochBlocks == 0 {
		c.EpochBlocks = 120
	}
	if c.BlockInterval <= 0 {
		c.BlockInterval = 500 * time.Millisecond
	}
	if c.MeanDelay == 0 {
		c.MeanDelay = 50 * time.Millisecond
	}
	switch {
	case c.Relays < 3:
		return fmt.Errorf("testnet: %d relays cannot fill 3 strata", c.Relays)
	case c.Mailboxes < 1:
		return errors.New("testnet: at least one mailbox node is needed")
	case c.Clients < 2:
		return errors.New("testnet: at least two clients are needed to exchange messages")
	case c.MeanDelay < 0 || c.LambdaP < 0 || c.LambdaL < 0 || c.LambdaD < 0 || c.LambdaM < 0:
		return errors.New("testnet: negative delay or rate")
	case c.Loss < 0 || c.Loss >= 1:
		return fmt.Errorf("testnet: loss %v: want a fraction in [0, 1)", c.Loss)
	case c.EpochBlocks < 8:
		return errors.New("testnet: epochs need at least 8 blocks")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// params returns the chain's parameters.
func (c *Config) params() pki.Params {
	p := pki.DefaultParams()
	p.EpochBlocks = c.EpochBlocks
	p.TopologyLead = c.EpochBlocks / 4
	p.PowBits = 12
	p.PublicAddrsOnly = false // every node of a local testnet listens on loopback
	p.MeanDelay = c.MeanDelay
	for _, r := range []struct {
		dst *float64
		v   float64
	}{{&p.LambdaP, c.LambdaP}, {&p.LambdaL, c.LambdaL}, {&p.LambdaD, c.LambdaD}, {&p.LambdaM, c.LambdaM}} {
		if r.v > 0 {
			*r.dst = r.v
		}
	}
	return p
}

// nodeProc is a relay or mailbox node running in this process.
type nodeProc struct {
	name    string
	role    pki.Role
	id      sphinx.NodeID
	metrics string
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	up      bool
	last    Sample
	lastAt  time.Time
	rate    float64
}

// Testnet is a running local network.
type Testnet struct {
	cfg       Config
	validator *pki.ValidatorNode
	chain     node.ChainConfig
	cache     *pki.TopologyCache
	lightDone <-chan struct{} // closed once the light client's store is closed
	nodes     []*nodeProc
	clients   []*demoClient
	stats     Stats
	start     time.Time
	http      *http.Client
	dash      *http.Server
	dashURL   string
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu       sync.Mutex
	inFlight map[string]*outgoing // by message id, until delivered or lost
}

// Start brings a testnet up and returns once its clients can exchange
// messages: the chain runs, every relay and mailbox node is admitted and in
// the verified topology, and every client has its mailbox.
func Start(ctx context.Context, cfg Config) (*Testnet, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	t := &Testnet{cfg: cfg, start: time.Now(), cancel: cancel, http: &http.Client{Timeout: 2 * time.Second}, inFlight: map[string]*outgoing{}}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	step := func(format string, args ...any) {
		fmt.Fprintf(cfg.Progress, "[%5.1fs] %s\n", time.Since(t.start).Seconds(), fmt.Sprintf(format, args...))
	}

	step("starting the validator (CometBFT, single node, epochs of %d blocks)", cfg.EpochBlocks)
	v, chain, err := node.StartLocalChain(runCtx, node.LocalChainConfig{
		Home: filepath.Join(cfg.DataDir, "validator"), ChainID: "strata-testnet", Params: cfg.params(),
		BlockInterval: cfg.BlockInterval,
		Attester:      pki.AttesterConfig{Interval: 250 * time.Millisecond, ProbeTimeout: 3 * time.Second},
		Logger:        cfg.Logger.With("node", "validator"),
	})
	if err != nil {
		return nil, err
	}
	t.validator, t.chain = v, chain
	step("chain %s up: RPC %s, trust root height %d hash %s", v.ChainID(), chain.RPC, chain.TrustHeight, chain.TrustHash[:16])

	for i := range cfg.Relays {
		if err := t.startNode(runCtx, fmt.Sprintf("relay-%d", i+1), pki.RoleRelay); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Mailboxes {
		if err := t.startNode(runCtx, fmt.Sprintf("mailbox-%d", i+1), pki.RoleMailbox); err != nil {
			return nil, err
		}
	}
	step("%d relays and %d mailbox nodes started; registering (intention, probes, VRF, mix keys)", cfg.Relays, cfg.Mailboxes)

	t.cache, t.lightDone, err = node.FollowChain(runCtx, chain, filepath.Join(cfg.DataDir, "light-client"), 250*time.Millisecond, cfg.Logger.With("node", "light-client"))
	if err != nil {
		return nil, err
	}
	if err := t.waitTopology(ctx, step); err != nil {
		return nil, err
	}

	// Clients start in parallel: each waits for its mailbox node to answer
	// its create, which takes a few round trips when packets are lost.
	t.clients = make([]*demoClient, cfg.Clients)
	errs := make([]error, cfg.Clients)
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		wg.Go(func() { t.clients[i], errs[i] = t.startClient(runCtx, ctx, i) })
	}
	wg.Wait()
	started := t.clients[:0]
	for _, c := range t.clients {
		if c != nil {
			started = append(started, c)
		}
	}
	t.clients = started
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	step("%d clients connected, mailboxes created", cfg.Clients)

	t.wg.Add(1)
	go func() { defer t.wg.Done(); t.scrapeLoop(runCtx) }()
	if cfg.MessageEvery > 0 {
		for i, c := range t.clients {
			t.wg.Add(1)
			go func() { defer t.wg.Done(); t.chatter(runCtx, c, t.clients[(i+1)%len(t.clients)]) }()
		}
	}
	if cfg.Dashboard != "" {
		ln, err := net.Listen("tcp", cfg.Dashboard)
		if err != nil {
			return nil, fmt.Errorf("testnet: dashboard: %w", err)
		}
		t.dash = &http.Server{Handler: Dashboard(t, cfg.Logger), ReadHeaderTimeout: 5 * time.Second}
		t.dashURL = "http://" + ln.Addr().String() + "/"
		go t.dash.Serve(ln)
		step("dashboard at %s", t.dashURL)
	}
	ok = true
	return t, nil
}

// startNode starts relay or mailbox node name in its own directory.
func (t *Testnet) startNode(ctx context.Context, name string, role pki.Role) error {
	dir := filepath.Join(t.cfg.DataDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "identity.pem")
	key, err := transport.LoadIdentity(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		if key, err = transport.GenerateIdentity(); err == nil {
			err = transport.SaveIdentity(keyPath, key)
		}
	}
	if err != nil {
		return err
	}
	// Bound here, not by port number later: another process could take
	// a port picked free and closed before the node binds it.
	metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metrics := metricsLn.Addr().String()
	chain := t.chain
	p := &nodeProc{name: name, role: role, id: sphinx.NodeID(transport.NodeIDFromPublicKey(key.Public().(ed25519.PublicKey))),
		metrics: "http://" + metrics + "/metrics", done: make(chan error, 1), up: true}
	nctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	log := t.cfg.Logger.With("node", name)
	listen := []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	go func() {
		var err error
		if role == pki.RoleRelay {
			err = node.RunRelay(nctx, &node.RelayConfig{Identity: keyPath, DataDir: dir, Listen: listen, MetricsListener: metricsLn,
				Chain: &chain, ChainInterval: "250ms", MaxRate: 2000, EpochLength: "10m", InjectLoss: t.cfg.Loss}, log)
		} else {
			err = node.RunMailbox(nctx, &node.MailboxConfig{Identity: keyPath, DataDir: dir, Listen: listen, MetricsListener: metricsLn,
				Chain: &chain, ChainInterval: "250ms", MaxRate: 2000, EpochLength: "10m"}, log)
		}
		if err != nil {
			log.Error("node stopped", "err", err)
		}
		p.mu.Lock()
		p.up = false
		p.mu.Unlock()
		p.done <- err
	}()
	t.nodes = append(t.nodes, p)
	return nil
}

// waitTopology waits until the verified topology lists every node.
func (t *Testnet) waitTopology(ctx context.Context, step func(string, ...any)) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastR, lastM := -1, -1
	for {
		if top := t.cache.Current(); top != nil {
			r, m := len(top.Relays), len(top.Mailboxes)
			if r != lastR || m != lastM {
				step("epoch %d topology: %d/%d relays in strata, %d/%d mailboxes", top.Epoch, r, t.cfg.Relays, m, t.cfg.Mailboxes)
				lastR, lastM = r, m
			}
			if r == t.cfg.Relays && m == t.cfg.Mailboxes {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// KillRelay stops relay i (0-based) as a crash would, for tests and demos
// of the network routing around a dead relay.
func (t *Testnet) KillRelay(i int) error {
	k := 0
	for _, p := range t.nodes {
		if p.role != pki.RoleRelay {
			continue
		}
		if k == i {
			p.cancel()
			<-p.done
			p.done <- nil // Close waits on it too
			return nil
		}
		k++
	}
	return fmt.Errorf("testnet: no relay %d", i)
}

// DashboardURL returns the dashboard's address, "" if none.
func (t *Testnet) DashboardURL() string { return t.dashURL }

// RPC returns the validator's CometBFT RPC endpoint.
func (t *Testnet) RPC() string { return t.chain.RPC }

// Chain returns what a node or client needs to reach and trust the
// testnet's chain: its RPC endpoint and its root of trust (block 1, as the
// embedded validator itself reports it — no endpoint is trusted on first
// use).
func (t *Testnet) Chain() node.ChainConfig { return t.chain }

// Metrics returns every node's Prometheus endpoint, by node name.
func (t *Testnet) Metrics() map[string]string {
	out := map[string]string{}
	for _, p := range t.nodes {
		out[p.name] = p.metrics
	}
	return out
}

// Stats returns the end-to-end message counters and latency quantiles.
func (t *Testnet) Stats() Counters {
	c, _ := t.stats.Snapshot()
	return c
}

// Close stops every node and the chain.
func (t *Testnet) Close() error {
	if t.dash != nil {
		t.dash.Close()
	}
	t.cancel()
	t.wg.Wait()
	if t.lightDone != nil {
		<-t.lightDone
	}
	var errs []error
	for _, c := range t.clients {
		errs = append(errs, c.close())
	}
	for _, p := range t.nodes {
		if err := <-p.done; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	if t.validator != nil {
		errs = append(errs, t.validator.Stop())
	}
	return errors.Join(errs...)
}
