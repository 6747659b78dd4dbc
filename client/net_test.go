package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// This file assembles a small Strata network on loopback for the client's
// tests, examples and benchmarks: real libp2p hosts, real relays (package
// relay, as package node runs them) with a client.Home wired in as their
// Local.Client, mailbox nodes (relay pipelines with NoForward and a
// Local.Mailbox sink), and a topology document that went through pki's
// encoder and decoder, so its strata and links are the ones pki derives.
// (The test imports relay; the package does not.)

// testRelay is a relay or mailbox node on a real host.
type testRelay struct {
	host  *transport.Host
	relay *relay.Relay
	home  *Home
	db    *relay.ReplayDB
	idk   ed25519.PrivateKey
	mix   *sphinx.PrivateKey
	pub   sphinx.PublicKey
	info  pki.NodeInfo
	inbox chan []byte // mailbox nodes: unpadded payloads received
	// seen, if set, learns of every packet the node's transport hands it
	// (the node's view of who sent what); entered maps a client's node id
	// to a func learning when each of its entry frames arrived.
	seen    atomic.Pointer[func(from transport.NodeID)]
	entered sync.Map
	stop    func()   // closes this incarnation (restart)
	listen  []string // the addresses it listens on, without /p2p/
}

func (r *testRelay) id() sphinx.NodeID { return sphinx.NodeID(r.host.ID()) }

// testNet is a network of relays in strata plus mailbox nodes.
type testNet struct {
	format  *sphinx.Format
	relays  []*testRelay
	mboxes  []*testRelay
	top     atomic.Pointer[pki.Topology]
	params  pki.Params
	opts    netOptions
	cleanup []func()
}

// netOptions shape a testNet.
type netOptions struct {
	layers, width, k, mailboxes int
	epoch                       uint64
	meanDelay                   time.Duration
	// sink makes every node a bare host that discards what it receives
	// (benchmarks of the client's own cost); relays still run a Home,
	// which forwards entry frames to the sinks.
	sink bool
	// entryRate is each Home's entry rate per client (HomeConfig.EntryRate):
	// the tests run clients far above the network's rates.
	entryRate float64
}

func defaultNet() netOptions {
	return netOptions{layers: 3, width: 2, k: 2, mailboxes: 1, epoch: 1, meanDelay: 5 * time.Millisecond, entryRate: 20000}
}

// startNet starts the network; Close stops it.
func startNet(o netOptions) (_ *testNet, err error) {
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		return nil, err
	}
	n := &testNet{format: f, opts: o}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	delay := sphinx.DelayPolicy{Mean: o.meanDelay}
	for i := range o.layers*o.width + o.mailboxes {
		r := &testRelay{}
		if r.mix, r.pub, err = sphinx.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
		if r.idk, err = transport.GenerateIdentity(); err != nil {
			return nil, err
		}
		if err := n.startNode(r, o.epoch, delay, i >= o.layers*o.width, o.sink, nil); err != nil {
			return nil, err
		}
		if i < o.layers*o.width {
			n.relays = append(n.relays, r)
		} else {
			n.mboxes = append(n.mboxes, r)
		}
	}
	all := append(slices.Clone(n.relays), n.mboxes...)
	for _, a := range all {
		for _, b := range all {
			if a != b {
				if err := a.host.AddPeer(b.host.PeerInfo()); err != nil {
					return nil, err
				}
			}
		}
	}
	p := pki.DefaultParams()
	p.Layers, p.Successors, p.MeanDelay = uint32(o.layers), uint32(o.k), o.meanDelay
	p.LambdaP, p.LambdaL, p.LambdaD = 10, 2, 2
	n.params = p
	top, err := n.topology(o.epoch, n.relays, n.mboxes)
	if err != nil {
		return nil, err
	}
	n.setTopology(top)
	return n, nil
}

// setTopology publishes top to the clients and the homes, as the PKI and
// node do.
func (n *testNet) setTopology(top *pki.Topology) {
	n.top.Store(top)
	for _, r := range n.relays {
		if r.home != nil {
			r.home.SetTopology(HomeEpochOf(top))
		}
	}
}

// topology builds the document of epoch listing relays and mailboxes,
// through pki's codec (which derives strata and links).
func (n *testNet) topology(epoch uint64, relays, mboxes []*testRelay) (*pki.Topology, error) {
	var beacon [32]byte
	rand.Read(beacon[:])
	var rs []pki.Relay
	for _, r := range relays {
		pr := pki.Relay{NodeInfo: r.info}
		rand.Read(pr.VRF[:])
		rs = append(rs, pr)
	}
	var mbs []pki.NodeInfo
	for _, m := range mboxes {
		mbs = append(mbs, m.info)
	}
	slices.SortFunc(mbs, func(a, b pki.NodeInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	t, err := pki.NewTopology("client-test", epoch, beacon, n.params, rs, mbs)
	if err != nil {
		return nil, err
	}
	return pki.DecodeTopology(t.Encode())
}

// startNode starts r (its keys set) as a relay (with a Home) or a mailbox
// node, listening on listen (nil: a fresh loopback port).
func (n *testNet) startNode(r *testRelay, epoch uint64, delay sphinx.DelayPolicy, mailbox, sink bool, listen []string) error {
	if listen == nil {
		listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	var stops []func()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			for i := len(stops) - 1; i >= 0; i-- {
				stops[i]()
			}
		})
	}
	n.cleanup = append(n.cleanup, r.stop)
	var err error
	var rl atomic.Pointer[relay.Relay]
	var home atomic.Pointer[Home]
	r.host, err = transport.New(context.Background(), transport.Config{
		Identity: r.idk, PacketSize: n.format.Geometry().PacketSize(),
		ListenAddrs: listen, SendQueue: 4096,
		Handler: func(from transport.NodeID, pkt []byte) {
			if f := r.seen.Load(); f != nil {
				(*f)(from)
			}
			if x := rl.Load(); x != nil {
				x.HandlePacket(sphinx.NodeID(from), pkt)
			}
		},
		Entry: func(from, next transport.NodeID, pkt []byte) {
			if f, ok := r.entered.Load(from); ok {
				f.(func(time.Time))(time.Now())
			}
			if h := home.Load(); h != nil {
				h.Entry(from, next, pkt)
			}
		},
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
	})
	if err != nil {
		return err
	}
	host := r.host
	stops = append(stops, func() { host.Close() })
	r.listen = nil
	for _, a := range host.Addrs() {
		if i := strings.Index(a, "/p2p/"); i >= 0 {
			a = a[:i]
		}
		r.listen = append(r.listen, a)
	}
	r.info = pki.NodeInfo{ID: r.id(), Addrs: r.host.Addrs(), MixKey: r.pub}
	copy(r.info.IdentityKey[:], r.idk.Public().(ed25519.PublicKey))
	self := r.id()
	inject := func(pkt []byte) error {
		if x := rl.Load(); x != nil {
			return x.Inject(pkt)
		}
		return relay.ErrBusy
	}
	if !mailbox {
		ep := HomeEpoch{Epoch: epoch}
		if top := n.top.Load(); top != nil {
			ep = HomeEpochOf(top)
		}
		h, err := NewHome(HomeConfig{Host: r.host, Geometry: n.format.Geometry(), Epoch: ep, Inject: inject, EntryRate: n.opts.entryRate})
		if err != nil {
			return err
		}
		r.home = h
		home.Store(h)
	}
	if sink {
		return nil
	}
	dir, err := tempDir()
	if err != nil {
		return err
	}
	if r.db, err = relay.OpenReplayDB(dir, 1<<20); err != nil {
		return err
	}
	db := r.db
	stops = append(stops, func() { db.Close() })
	keys, err := relay.NewKeyring(epoch, relay.EpochKey{Epoch: epoch, Key: r.mix})
	if err != nil {
		return err
	}
	local := relay.Local{}
	if mailbox {
		r.inbox = make(chan []byte, 4096)
		local.Mailbox = func(payload []byte) {
			msg, err := Unpad(payload)
			if err != nil {
				return
			}
			select {
			case r.inbox <- bytes.Clone(msg):
			default:
			}
		}
	} else {
		local.Client = r.home.Deliver
	}
	x, err := relay.New(relay.Config{
		Format: n.format, Keys: keys, Delay: delay, Replay: r.db, Local: local, NoForward: mailbox,
		Link: relay.LinkFunc(func(ctx context.Context, to sphinx.NodeID, pkt []byte) error {
			if to == self {
				return rl.Load().Inject(pkt)
			}
			return host.Send(ctx, transport.NodeID(to), pkt)
		}),
	})
	if err != nil {
		return err
	}
	rl.Store(x)
	r.relay = x
	// Closed before the host and database.
	stops = append(stops, func() { x.Close() })
	return nil
}

// restart stops relay r (if it is still up) and starts it again after
// down with the same identity, mix key and listen address, as a relay
// process restarted by its operator: a fresh Home (no registrations) and
// a fresh replay database.
func (n *testNet) restart(r *testRelay, down time.Duration) error {
	r.stop()
	time.Sleep(down)
	if err := n.startNode(r, n.Topology().Epoch, sphinx.DelayPolicy{Mean: n.opts.meanDelay}, false, n.opts.sink, r.listen); err != nil {
		return err
	}
	// Its send pool, from the topology, as node's routing fills it.
	for _, o := range append(slices.Clone(n.relays), n.mboxes...) {
		if o != r {
			if err := r.host.AddPeer(transport.PeerInfo{PublicKey: o.info.IdentityKey[:], Addrs: o.host.Addrs()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close stops every node.
func (n *testNet) Close() {
	for i := len(n.cleanup) - 1; i >= 0; i-- {
		n.cleanup[i]()
	}
	n.cleanup = nil
}

// Topology is the client's topology provider.
func (n *testNet) Topology() *pki.Topology { return n.top.Load() }

// homeInfo returns the PeerInfo of relay i, for Config.Home.
func (n *testNet) homeInfo(i int) transport.PeerInfo { return n.relays[i].host.PeerInfo() }

// newClient starts a client whose home is relay home.
func (n *testNet) newClient(ctx context.Context, dir string, key ed25519.PrivateKey, home int, rates Rates) (*Client, error) {
	if key == nil {
		var err error
		if key, err = transport.GenerateIdentity(); err != nil {
			return nil, err
		}
	}
	return New(ctx, Config{Identity: key, DataDir: dir, Home: n.homeInfo(home), Topology: n.Topology, Rates: &rates})
}

var tempDirs struct {
	sync.Mutex
	n int
}

// tempDir returns a fresh directory (examples and benchmarks have no
// testing.T to ask).
func tempDir() (string, error) {
	tempDirs.Lock()
	defer tempDirs.Unlock()
	tempDirs.n++
	return filepath.Join(sharedTemp, fmt.Sprintf("d%d", tempDirs.n)), nil
}

// mustNet starts a network for a test and stops it when the test ends.
func mustNet(t testing.TB, o netOptions) *testNet {
	t.Helper()
	n, err := startNet(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// mustClient starts a client for a test and closes it when the test ends.
func mustClient(t testing.TB, n *testNet, home int, rates Rates) *Client {
	t.Helper()
	c, err := n.newClient(context.Background(), t.TempDir(), nil, home, rates)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Error(err)
		}
	})
	return c
}

// eventually polls cond until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
