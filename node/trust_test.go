package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// countingHandler is a slog.Handler that keeps every record (message,
// level and attributes as text) for the test to count.
type countingHandler struct {
	mu    *sync.Mutex
	recs  *[]logRec
	attrs []slog.Attr
}

type logRec struct {
	level slog.Level
	msg   string
	attrs string
}

func newCounting() (*slog.Logger, *countingHandler) {
	h := &countingHandler{mu: &sync.Mutex{}, recs: &[]logRec{}}
	return slog.New(h), h
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	for _, a := range h.attrs {
		fmt.Fprintf(&b, "%s=%v ", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, "%s=%v ", a.Key, a.Value); return true })
	h.mu.Lock()
	*h.recs = append(*h.recs, logRec{r.Level, r.Message, b.String()})
	h.mu.Unlock()
	return nil
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{mu: h.mu, recs: h.recs, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *countingHandler) WithGroup(string) slog.Handler { return h }

// count returns how many records have level and a message starting with
// prefix and attributes containing sub.
func (h *countingHandler) count(level slog.Level, prefix, sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range *h.recs {
		if r.level == level && strings.HasPrefix(r.msg, prefix) && strings.Contains(r.attrs, sub) {
			n++
		}
	}
	return n
}

// repeatedWarn returns a WARN or ERROR message logged more than once (with
// the same attributes but for digits), or "".
func (h *countingHandler) repeatedWarn() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range *h.recs {
		if r.level < slog.LevelWarn {
			continue
		}
		k := strings.Map(func(c rune) rune {
			if c >= '0' && c <= '9' {
				return -1
			}
			return c
		}, r.msg+" "+r.attrs)
		if seen[k] {
			return k
		}
		seen[k] = true
	}
	return ""
}

func (h *countingHandler) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range *h.recs {
		if r.level >= slog.LevelInfo {
			fmt.Fprintf(&b, "%v %s %s\n", r.level, r.msg, r.attrs)
		}
	}
	return b.String()
}

// rpcProxy forwards TCP connections on a fixed loopback port to a
// validator's RPC: a second, real endpoint of the same chain that the test
// takes down and brings back.
type rpcProxy struct {
	t      *testing.T
	addr   string // host:port
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newRPCProxy(t *testing.T, rpc string) *rpcProxy {
	u, err := url.Parse(rpc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rpcProxy{t: t, addr: ln.Addr().String(), target: u.Host}
	ln.Close()
	t.Cleanup(p.down)
	return p
}

func (p *rpcProxy) url() string { return "http://" + p.addr }

func (p *rpcProxy) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
}

func (p *rpcProxy) serve(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns = append(p.conns, c, s)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}

// down closes the listener and every forwarded connection.
func (p *rpcProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// startMember starts a node's membership on a new host with its data in
// dir, as a mailbox node (one relay alone makes no strata, so it would
// never be listed); stop cancels it and waits until its light-client store
// is closed.
func startMember(t *testing.T, cc ChainConfig, dir string, log *slog.Logger) (m *Membership, stop func(), err error) {
	t.Helper()
	key, err := transport.LoadIdentity(dir + ".key")
	if err != nil {
		if key, err = transport.GenerateIdentity(); err != nil {
			t.Fatal(err)
		}
		if err := transport.SaveIdentity(dir+".key", key); err != nil {
			t.Fatal(err)
		}
	}
	host, err := transport.New(context.Background(), transport.Config{Identity: key, PacketSize: sphinx.DefaultGeometry().PacketSize(),
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err = StartMembership(ctx, MembershipConfig{Chain: cc, Identity: key, Role: pki.RoleMailbox, DataDir: dir,
		Host: host, Interval: 200 * time.Millisecond, Logger: log})
	if err != nil {
		cancel()
		host.Close()
		return nil, nil, err
	}
	return m, func() {
		cancel()
		select {
		case <-m.Done():
		case <-time.After(20 * time.Second):
			t.Error("membership did not stop")
		}
		host.Close()
	}, nil
}

// waitAdmitted waits until m's verified topology lists m's node.
func waitAdmitted(t *testing.T, m *Membership) *pki.Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	top, err := m.Wait(ctx, func(top *pki.Topology) bool {
		for _, mb := range top.Mailboxes {
			if mb.ID == m.self {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("the node never saw itself in the verified topology: %v", err) // logs: STRATA_TEST_LOG=1
	}
	return top
}

// TestMembershipResumesTrustFromItsStore restarts a node's membership
// against a real validator: with the trust root removed from its config it
// resumes from the headers its light client stored in <data_dir>/light
// (a node with an empty store and no root is refused); with a trust period
// shorter than the configured root's age it still resumes from the store;
// stopped for longer than the trust period it refuses to start with the
// documented error (get a fresh trust root), and starts again with one.
func TestMembershipResumesTrustFromItsStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	n, cc := startTestChain(t, chainParams())
	dir := t.TempDir() + "/relay"
	m, stop, err := startMember(t, cc, dir, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	first := waitAdmitted(t, m)
	stop()

	noRoot := ChainConfig{RPC: cc.RPC}
	if _, _, err := startMember(t, noRoot, t.TempDir()+"/fresh", testLog(t)); err == nil || !strings.Contains(err.Error(), "needs trust_height and trust_hash") {
		t.Fatalf("a node with no trust root and an empty store: %v", err)
	}
	m, stop, err = startMember(t, noRoot, dir, testLog(t))
	if err != nil {
		t.Fatalf("restart without the trust root: %v", err)
	}
	top := waitAdmitted(t, m)
	ei, err := m.Epoch(context.Background())
	if err != nil || ei.Epoch < first.Epoch {
		t.Fatalf("restarted membership reads epoch %d (%v), had topology of epoch %d", ei.Epoch, err, first.Epoch)
	}
	t.Logf("resumed from the store at epoch %d (first run saw epoch %d)", top.Epoch, first.Epoch)

	// Block 1, the configured root, ages past a short trust period while
	// the node keeps verifying newer headers.
	const period = 6 * time.Second
	short := cc
	short.TrustPeriod = period.String()
	stop()
	m, stop, err = startMember(t, short, dir, testLog(t))
	if err != nil {
		t.Fatalf("restart with trust period %v: %v", period, err)
	}
	deadline := time.Now().Add(period + 2*time.Second)
	for time.Now().Before(deadline) {
		if _, err := m.Epoch(context.Background()); err != nil {
			t.Fatalf("verifying with a %v trust period: %v", period, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	stop()
	m, stop, err = startMember(t, short, dir, testLog(t))
	if err != nil {
		t.Fatalf("restart with the configured root (block 1) older than the trust period, the store fresh: %v", err)
	}
	waitAdmitted(t, m)
	stop()

	// Stopped for longer than the trust period: every trusted header is
	// expired.
	time.Sleep(period + time.Second)
	_, _, err = startMember(t, short, dir, testLog(t))
	if !errors.Is(err, pki.ErrTrustExpired) || !strings.Contains(err.Error(), "fresh trust root") || !strings.Contains(err.Error(), "trust_hash in [chain]") {
		t.Fatalf("restart after the trust period: %v, want ErrTrustExpired saying what to do", err)
	}
	t.Logf("expired: %v", err)
	root, err := ReportedTrustRoot(context.Background(), []string{n.RPC()})
	if err != nil {
		t.Fatal(err)
	}
	fresh := short
	fresh.TrustHeight, fresh.TrustHash = root.Height, root.Hash
	m, stop, err = startMember(t, fresh, dir, testLog(t))
	if err != nil {
		t.Fatalf("restart with a fresh trust root: %v", err)
	}
	waitAdmitted(t, m)
	stop()
}

// TestFailoverWarnsOnce gives a node's membership two endpoints of one
// real validator, the first one down at start: it starts, is admitted and
// follows the chain's epochs through the second, and logs the first one
// down once (one WARN) however long the outage, back once (one INFO) when
// it comes up, and down once more at a second outage; no WARN repeats.
// Then a client's light client (FollowChain) with the proxy as its only
// endpoint: an outage of every endpoint gives one WARN of the endpoint,
// one of the failing refresh, and one INFO of each when it is back.
func TestFailoverWarnsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	n, cc := startTestChain(t, chainParams())
	proxy := newRPCProxy(t, n.RPC())
	log, h := newCounting()
	two := cc
	two.RPC, two.RPCs = "", []string{proxy.url(), n.RPC()}
	m, stop, err := startMember(t, two, t.TempDir()+"/relay", log)
	if err != nil {
		t.Fatalf("first endpoint down at start: %v", err)
	}
	defer stop()
	first := waitAdmitted(t, m)
	// Two epoch changes (about 3 s each) followed through the second
	// endpoint.
	deadline := time.Now().Add(40 * time.Second)
	for {
		top, _ := m.Current()
		if top.Epoch >= first.Epoch+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not follow the chain through the second endpoint (epoch %d, chain %d)\n%s", top.Epoch, chainEpoch(t, n), h.dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := h.count(slog.LevelWarn, "pki: RPC endpoint down", proxy.addr); got != 1 {
		t.Errorf("%d WARNs for the dead endpoint over two epochs, want 1\n%s", got, h.dump())
	}
	if rep := h.repeatedWarn(); rep != "" {
		t.Errorf("a WARN repeats: %s\n%s", rep, h.dump())
	}
	proxy.up()
	waitCount(t, h, slog.LevelInfo, "pki: RPC endpoint answers again", proxy.addr, 1)
	proxy.down()
	waitCount(t, h, slog.LevelWarn, "pki: RPC endpoint down", proxy.addr, 2)
	time.Sleep(3 * time.Second)
	if got := h.count(slog.LevelWarn, "pki: RPC endpoint down", proxy.addr); got != 2 {
		t.Errorf("%d WARNs after two outages, want 2\n%s", got, h.dump())
	}
	if got := h.count(slog.LevelInfo, "pki: RPC endpoint answers again", proxy.addr); got != 1 {
		t.Errorf("%d INFOs after one recovery, want 1\n%s", got, h.dump())
	}
	if top, _ := m.Current(); top.Epoch < first.Epoch+2 {
		t.Errorf("topology went back to epoch %d", top.Epoch)
	}
	stop()

	// The proxy alone: every endpoint down.
	proxy.up()
	log, h = newCounting()
	one := cc
	one.RPC = proxy.url()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache, _, err := FollowChain(ctx, one, t.TempDir(), 100*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); cache.Current() == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no topology through the proxy\n%s", h.dump())
		}
	}
	proxy.down()
	time.Sleep(3 * time.Second)
	if got := h.count(slog.LevelWarn, "pki: RPC endpoint down", proxy.addr); got != 1 {
		t.Errorf("%d endpoint WARNs during a 3 s outage of the only endpoint, want 1\n%s", got, h.dump())
	}
	// pki.TopologyCache warns once per kind of error (an outage of every
	// endpoint is pki.ErrNoEndpoint however it was found), not once per
	// attempt: it refreshes every 100 ms.
	if got := h.count(slog.LevelWarn, "pki: topology refresh failed", ""); got != 1 {
		t.Errorf("%d refresh WARNs during a 3 s outage of every endpoint, want 1\n%s", got, h.dump())
	}
	proxy.up()
	waitCount(t, h, slog.LevelInfo, "pki: topology refresh works again", "", 1)
	waitCount(t, h, slog.LevelInfo, "pki: RPC endpoint answers again", proxy.addr, 1)
	if rep := h.repeatedWarn(); rep != "" {
		t.Errorf("a WARN repeats: %s\n%s", rep, h.dump())
	}
	if got := h.count(slog.LevelWarn, "", ""); got > 4 {
		t.Errorf("%d WARNs for one outage\n%s", got, h.dump())
	}
}

// waitCount waits until h holds want records matching level, prefix and
// sub.
func waitCount(t *testing.T, h *countingHandler, level slog.Level, prefix, sub string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for h.count(level, prefix, sub) < want {
		if time.Now().After(deadline) {
			t.Fatalf("want %d %v %q records naming %q\n%s", want, level, prefix, sub, h.dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestChainSectionEndpoints reads [chain] sections of relay configs: the
// old single rpc, the rpcs list (rpc first, repeats dropped), no trust
// root (allowed: the store must hold one), and refuses bad endpoints,
// half a trust root and a bad trust period.
func TestChainSectionEndpoints(t *testing.T) {
	dir := t.TempDir()
	hash := strings.Repeat("ab", 32)
	load := func(chain string) (*RelayConfig, error) {
		p := dir + "/relay.toml"
		body := "identity = \"k\"\ndata_dir = \"d\"\n[chain]\n" + chain
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return LoadRelayConfig(p)
	}
	for _, c := range []struct {
		chain string
		want  []string
	}{
		{"rpc = \"http://a:26657\"\ntrust_height = 1\ntrust_hash = \"" + hash + "\"\n", []string{"http://a:26657"}},
		{"rpcs = [\"http://a:26657\", \"https://b:443\"]\n", []string{"http://a:26657", "https://b:443"}},
		{"rpc = \"http://a:26657\"\nrpcs = [\"tcp://b:26657\", \"http://a:26657\"]\ntrust_period = \"72h\"\n", []string{"http://a:26657", "tcp://b:26657"}},
	} {
		cfg, err := load(c.chain)
		if err != nil {
			t.Errorf("%q: %v", c.chain, err)
			continue
		}
		if got := cfg.Chain.Endpoints(); !slices.Equal(got, c.want) {
			t.Errorf("%q: endpoints %q, want %q", c.chain, got, c.want)
		}
	}
	for _, bad := range []string{
		"trust_height = 1\n",
		"rpcs = []\n",
		"rpc = \"ftp://a\"\n",
		"rpc = \"http://\"\n",
		"rpcs = [\"http://a:1\", \"a:2\"]\n",
		"rpc = \"http://a:1\"\nwitnesses = [\"nope\"]\n",
		"rpc = \"http://a:1\"\ntrust_hash = \"" + hash + "\"\n",
		"rpc = \"http://a:1\"\ntrust_height = 1\ntrust_hash = \"zz\"\n",
		"rpc = \"http://a:1\"\ntrust_height = -1\ntrust_hash = \"" + hash + "\"\n",
		"rpc = \"http://a:1\"\ntrust_period = \"-1h\"\n",
		"rpc = \"http://a:1\"\ntrust_period = \"week\"\n",
		"rpc = \"http://a:1\"\nrpcz = [\"http://b:1\"]\n",
	} {
		if _, err := load(bad); err == nil {
			t.Errorf("[chain] %q accepted", bad)
		}
	}
}
