package node

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/transport"
)

func multiaddrs(t *testing.T, ss ...string) []ma.Multiaddr {
	t.Helper()
	out := make([]ma.Multiaddr, len(ss))
	for i, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

// TestRegisteredAddrsFollowTheChainsRule checks what a node registers
// from its host's addresses and its announce setting, on a chain that
// takes only public addresses and on one that takes any.
func TestRegisteredAddrsFollowTheChainsRule(t *testing.T) {
	host := multiaddrs(t, "/ip4/0.0.0.0/tcp/4001", "/ip4/127.0.0.1/tcp/4001", "/ip4/10.1.2.3/tcp/4001",
		"/ip4/203.0.113.9/tcp/4001", "/ip6/::1/udp/4001/quic-v1", "/ip6/::/tcp/4001", "/ip4/192.168.1.2/udp/4001/quic-v1",
		"/ip4/203.0.113.9/udp/4001/quic-v1")
	local := multiaddrs(t, "/ip4/127.0.0.1/tcp/4001", "/ip4/172.17.0.2/tcp/4001", "/ip6/fe80::1/tcp/4001")
	announce := []string{"/dns4/relay.example.org/tcp/4001", "/ip4/198.51.100.4/udp/4001/quic-v1"}
	for _, c := range []struct {
		name     string
		announce []string
		host     []ma.Multiaddr
		public   bool
		want     []string
		err      string
	}{
		{"public chain: only public host addresses", nil, host, true,
			[]string{"/ip4/203.0.113.9/tcp/4001", "/ip4/203.0.113.9/udp/4001/quic-v1"}, ""},
		{"testnet: every specified host address", nil, host, false,
			[]string{"/ip4/127.0.0.1/tcp/4001", "/ip4/10.1.2.3/tcp/4001", "/ip4/203.0.113.9/tcp/4001", "/ip6/::1/udp/4001/quic-v1",
				"/ip4/192.168.1.2/udp/4001/quic-v1", "/ip4/203.0.113.9/udp/4001/quic-v1"}, ""},
		{"public chain, no public address", nil, local, true, nil, "set announce"},
		{"nothing but unspecified", nil, multiaddrs(t, "/ip4/0.0.0.0/tcp/1"), false, nil, "set announce"},
		{"nine addresses", nil, multiaddrs(t, "/ip4/1.1.1.1/tcp/1", "/ip4/1.1.1.2/tcp/1", "/ip4/1.1.1.3/tcp/1",
			"/ip4/1.1.1.4/tcp/1", "/ip4/1.1.1.5/tcp/1", "/ip4/1.1.1.6/tcp/1", "/ip4/1.1.1.7/tcp/1", "/ip4/1.1.1.8/tcp/1",
			"/ip4/1.1.1.9/tcp/1"), true, nil, "at most 8"},
		{"announce on a public chain", announce, local, true, announce, ""},
		{"announce on a testnet", []string{"/ip4/127.0.0.1/tcp/9"}, host, false, []string{"/ip4/127.0.0.1/tcp/9"}, ""},
		{"private announce on a public chain", []string{"/ip4/198.51.100.4/tcp/1", "/ip4/10.0.0.1/tcp/1"}, host, true, nil, "not a public address"},
		{"local name on a public chain", []string{"/dns4/box.local/tcp/1"}, host, true, nil, "local host"},
		{"bad announce", []string{"/ip4/198.51.100.4/tcp/1/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"}, host, false, nil, "names a peer"},
	} {
		got, err := registeredAddrs(c.announce, c.host, c.public)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: got %v, %v; want an error with %q", c.name, got, err, c.err)
		case c.err == "" && (err != nil || !slices.Equal(got, c.want)):
			t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// TestAnnounceSettingIsChecked loads relay and mailbox configs with an
// announce setting and refuses each kind of unusable address at load
// time, before anything starts; --announce (WithAnnounce) is held to the
// same rules.
func TestAnnounceSettingIsChecked(t *testing.T) {
	dir := t.TempDir()
	chain := "\n[chain]\nrpc = \"http://127.0.0.1:26657\"\ntrust_height = 1\ntrust_hash = \"" + strings.Repeat("ab", 32) + "\"\n"
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := "identity = \"id.key\"\ndata_dir = \"d\"\nlisten = [\"/ip4/0.0.0.0/tcp/4001\"]\n"
	good := `announce = ["/ip4/198.51.100.4/tcp/4001", "/dns4/relay.example.org/udp/4001/quic-v1"]` + "\n"
	rc, err := LoadRelayConfig(write("relay.toml", base+good+chain))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/ip4/198.51.100.4/tcp/4001", "/dns4/relay.example.org/udp/4001/quic-v1"}
	if !slices.Equal(rc.Announce, want) {
		t.Fatalf("relay announce %v, want %v", rc.Announce, want)
	}
	mc, err := LoadMailboxConfig(write("mailbox.toml", base+good+chain))
	if err != nil || !slices.Equal(mc.Announce, want) {
		t.Fatalf("mailbox announce %v (%v), want %v", mc.Announce, err, want)
	}
	nine := make([]string, 9)
	for i := range nine {
		nine[i] = fmt.Sprintf("\"/ip4/198.51.100.%d/tcp/1\"", i+1)
	}
	for name, announce := range map[string]string{
		"not canonical":   `["/ip4/198.51.100.4/tcp/04001"]`,
		"not a multiaddr": `["198.51.100.4:4001"]`,
		"names a peer":    `["/ip4/198.51.100.4/tcp/1/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"]`,
		"unspecified":     `["/ip4/0.0.0.0/tcp/4001"]`,
		"too many":        "[" + strings.Join(nine, ", ") + "]",
		"too long":        `["/dns4/` + strings.Repeat("a", 250) + `.org/tcp/1"]`,
	} {
		body := base + "announce = " + announce + "\n" + chain
		if _, err := LoadRelayConfig(write("bad-relay.toml", body)); err == nil || !strings.Contains(err.Error(), "announce") {
			t.Errorf("relay, %s: %v, want an announce error", name, err)
		}
		if _, err := LoadMailboxConfig(write("bad-mailbox.toml", body)); err == nil || !strings.Contains(err.Error(), "announce") {
			t.Errorf("mailbox, %s: %v, want an announce error", name, err)
		}
	}
	if _, err := LoadRelayConfig(write("static.toml", base+good+"topology = \"top.json\"\n")); err == nil {
		t.Error("announce with a static topology file accepted")
	}
	if _, err := rc.WithAnnounce([]string{"/ip4/0.0.0.0/tcp/1"}); err == nil {
		t.Error("--announce of an unspecified address accepted")
	}
	if got, err := mc.WithAnnounce([]string{"/ip4/198.51.100.9/tcp/9"}); err != nil || !slices.Equal(got.Announce, []string{"/ip4/198.51.100.9/tcp/9"}) || !slices.Equal(mc.Announce, want) {
		t.Errorf("--announce on a mailbox: %v, %v (file's %v)", got, err, mc.Announce)
	}
}

// TestWildcardNodeRegistersNoInternalAddress runs nodes against a real
// validator whose chain takes only public addresses. A node on loopback
// without announce refuses to start, saying to set announce, and sends no
// intention. A node on 0.0.0.0 without announce registers exactly the
// host's public addresses, never a loopback or other internal one (or,
// on a machine with none, refuses as well). With announce, the chain
// holds exactly the announced addresses.
func TestWildcardNodeRegistersNoInternalAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	p := chainParams()
	p.PublicAddrsOnly = true
	n, cc := startTestChain(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys := map[*transport.Host]ed25519.PrivateKey{}
	newHost := func(listen string) *transport.Host {
		key, err := transport.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		h, err := transport.New(ctx, transport.Config{Identity: key, PacketSize: 1024,
			ListenAddrs: []string{listen}, Handler: func(transport.NodeID, []byte) {}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		keys[h] = key
		return h
	}
	start := func(h *transport.Host, announce []string) error {
		_, err := StartMembership(ctx, MembershipConfig{Chain: cc, Identity: keys[h], Role: pki.RoleRelay,
			DataDir: t.TempDir(), Host: h, Interval: 200 * time.Millisecond, Announce: announce, Logger: testLog(t)})
		return err
	}
	view := func(h *transport.Host) (*pki.NodeView, error) {
		id := h.ID()
		raw, _, err := n.Query(ctx, pki.QueryNode+"/"+hex.EncodeToString(id[:]))
		if err != nil {
			return nil, err
		}
		var v pki.NodeView
		return &v, json.Unmarshal(raw, &v)
	}
	// registered waits for h's registration and checks it holds exactly want.
	registered := func(h *transport.Host, want []string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			v, err := view(h)
			if err == nil {
				if !slices.Equal(v.Addrs, want) {
					t.Fatalf("registered %v, want exactly %v", v.Addrs, want)
				}
				for _, a := range v.Addrs {
					if err := pki.CheckPublicAddr(ma.StringCast(a)); err != nil {
						t.Fatalf("registered %s: %v", a, err)
					}
				}
				t.Logf("registered %v (%s)", v.Addrs, v.Status)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no registration within 20 s: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// refused checks that starting h fails, saying to set announce, and
	// that the chain never hears of h.
	refused := func(h *transport.Host) {
		t.Helper()
		err := start(h, nil)
		if err == nil || !strings.Contains(err.Error(), "set announce") {
			t.Fatalf("no public address, no announce: %v, want an error saying to set announce", err)
		}
		t.Logf("refused: %v", err)
		time.Sleep(time.Second) // an intention, had one gone out, would be on chain by now
		if _, err := view(h); !errors.Is(err, pki.ErrNotFound) {
			t.Fatalf("the node refused to start but the chain knows it (%v)", err)
		}
	}

	loop := newHost("/ip4/127.0.0.1/tcp/0")
	refused(loop)

	wild := newHost("/ip4/0.0.0.0/tcp/0")
	var public []string
	for _, a := range wild.LibP2P().Addrs() {
		if pki.CheckPublicAddr(a) == nil {
			public = append(public, a.String())
		}
	}
	t.Logf("0.0.0.0 expands to %v; public: %v", wild.LibP2P().Addrs(), public)
	if len(public) == 0 {
		refused(wild)
	} else {
		if err := start(wild, nil); err != nil {
			t.Fatalf("host has public addresses %v but start failed: %v", public, err)
		}
		registered(wild, public)
	}

	announce := []string{"/ip4/203.0.113.7/tcp/4001", "/dns4/relay.example.org/udp/4001/quic-v1"}
	if err := start(loop, announce); err != nil {
		t.Fatal(err)
	}
	registered(loop, announce)
}
