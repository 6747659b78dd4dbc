package mailbox

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// TestStuckFirstHopDoesNotStallTheNode is the attack of a malicious user
// (A5/A7) on the node's send path (P5): a second first-stratum relay is
// connected but reads only 20 packets a second (so its stream stalls and
// the node's queue for it fills), and the attacker puts 1,000 messages into
// a mailbox, each with a SURB whose first hop is that relay, so that every
// acknowledgement goes to it. All of them run on the worker of that mailbox
// — the same worker an honest sender's puts to the mailbox run on. The
// node's queue for the stuck relay is 64 packets, so the attack is sure to
// fill it: the replies beyond are dropped as send, where a node that
// waited for room would send them all, late. An honest sender puts
// 20 messages in between, with SURBs through the healthy first-stratum
// relay: every one is acknowledged, while the worker keeps up (no request
// dropped as busy). A node that waited on the full link (as it did
// before, up to 2 s a reply) would hold the worker about 50 ms a reply,
// some 40 s for the attack's replies, and delay every honest put behind
// them.
func TestStuckFirstHopDoesNotStallTheNode(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 puts")
	}
	tb := newTestbedQueue(t, Config{}, 64)
	mboxID := tb.mbox.hop.ID

	var got atomic.Int64
	block := make(chan struct{})
	idk, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	stuck, err := transport.New(context.Background(), transport.Config{
		Identity: idk, PacketSize: tb.f.Geometry().PacketSize(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		// It reads one packet each 50 ms: slow enough that the node's
		// queue for it stays full, steady enough that no write times out
		// (the transport would then call it unreachable and fail sends
		// at once, waiting or not).
		Handler: func(transport.NodeID, []byte) {
			got.Add(1)
			select {
			case <-block:
			case <-time.After(50 * time.Millisecond):
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stuck.Close() })
	t.Cleanup(func() { close(block) }) // before the host closes (LIFO)
	if err := tb.mbox.host.AddPeer(stuck.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	stuckHop := sphinx.Hop{ID: sphinx.NodeID(stuck.ID())}
	_, stuckHop.Key, _ = sphinx.GenerateKey(rand.Reader)
	tb.first.Set(1, []sphinx.NodeID{tb.mix[0].hop.ID, stuckHop.ID})

	owner, sender, attacker := tb.newUser(), tb.newUser(), tb.newUser()
	box := owner.box(0)
	tb.send(owner, &Request{Op: OpCreate, Mailbox: box, Plugin: Ed25519Auth{}.ID(),
		Credential: owner.key.Public().(ed25519.PublicKey), SURBs: tb.surbs(owner, 1)})
	expectOK(t, tb.next(owner), OpCreate)

	// The attacker's SURBs all start at the stuck relay; their headers
	// need not be valid, it never reads them.
	path := []sphinx.Hop{stuckHop, tb.mix[1].hop, tb.mix[2].hop, tb.home.hop}
	surb, _, _, err := tb.f.NewSURB(rand.Reader, path, attacker.token, sphinx.DelayPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := surb.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's puts go to the node in one-hop packets from its own
	// host (the testbed's relays do not check routes): the node's send
	// path is under attack, not the relays.
	atk, err := transport.New(context.Background(), transport.Config{Identity: mustIdentity(t), PacketSize: tb.f.Geometry().PacketSize(), NoListen: true, SendQueue: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { atk.Close() })
	if err := atk.AddPeer(tb.mbox.host.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	// Baseline: the honest sender's round trip with no attack.
	honestPut := func(i int) time.Duration {
		start := time.Now()
		tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: []byte{'h', byte(i)}})
		expectOK(t, tb.nextOp(sender, OpOK), OpPut)
		return time.Since(start)
	}
	var base []time.Duration
	for i := range 10 {
		base = append(base, honestPut(100+i))
	}
	slices.Sort(base)

	puts := func() float64 { return testutil.ToFloat64(tb.node.m.requests.WithLabelValues("put")) }
	const attack, honest = 1000, 20
	attackDone := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(attackDone)
		for i := range attack {
			b, err := tb.codec.EncodeRequest(&Request{Op: OpPut, Mailbox: box, SURBs: [][]byte{bad}, Message: []byte{byte(i >> 8), byte(i), 'x'}}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			pkt, _, err := tb.f.NewPacket(rand.Reader, []sphinx.Hop{tb.mbox.hop}, sphinx.DeliverToMailbox(), sphinx.DelayPolicy{}, client.Pad(tb.f.Geometry().PayloadCapacity(), b))
			if err != nil {
				t.Error(err)
				return
			}
			// Keep the worker's inbox (128) from overflowing: the
			// attack is on the send path, not a flood of the inbox.
			for float64(i) > puts()+64 {
				time.Sleep(time.Millisecond)
			}
			if err := atk.Send(context.Background(), transport.NodeID(mboxID), pkt); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	// The honest sender, meanwhile, through the mixnet.
	var lat []time.Duration
	for i := range honest {
		lat = append(lat, honestPut(i))
	}
	<-attackDone
	waitUntil(t, "the node handled every put", func() bool { return puts() == attack+honest+10 })
	took := time.Since(began)
	slices.Sort(lat)
	d := tb.dropped()
	t.Logf("%d attack puts and %d honest ones handled in %v; honest acknowledgements p50 %v, max %v (without the attack %v, %v); stuck relay got %d packets; node dropped %v",
		attack, honest, took, lat[len(lat)/2], lat[len(lat)-1], base[len(base)/2], base[len(base)-1], got.Load(), d)
	if got.Load() == 0 {
		t.Fatal("the stuck relay got nothing: the attack did not reach it")
	}
	// The node drops what the full link cannot take instead of waiting
	// for room: most of the attack's replies (a waiting node sent nearly
	// all of them, late: 14 of 1,000 dropped).
	if d["send"] < attack/4 {
		t.Fatalf("%v of %d replies to the stuck relay dropped: the node waited for its link", d["send"], attack)
	}
	// Honest puts are not held behind the attack's replies (a waiting
	// node: p50 2.5 s against 0.25 s without the attack). The bound is
	// generous for a loaded machine.
	if p50, b50 := lat[len(lat)/2], base[len(base)/2]; p50 > b50+time.Second {
		t.Fatalf("honest acknowledgements p50 %v under the attack, %v without: the worker waited on the stuck relay", p50, b50)
	}
	if d["busy"] != 0 {
		t.Fatalf("%v requests dropped busy: the worker fell behind", d["busy"])
	}
	if tb.bad.Load() != 0 {
		t.Fatalf("%d deliveries did not open", tb.bad.Load())
	}
}

func mustIdentity(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
