package queue

import (
	"context"
	crand "crypto/rand"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-mix/strata/client"
)

// The test network: queues exchange payloads over an in-process lossy
// channel that drops a configurable fraction of packets and delays each
// survivor by a random time (so packets overtake each other). It is the
// network model the queue is tested against, not a stand-in for a
// component: the mix network is exactly this to a client, a lossy
// reordering datagram service with known delays.

const testSURBSize = 357

// surbMint makes SURBs for node owner: opaque 357-byte blocks (the size of
// a real one) whose prefix names the owner, so the network can route
// replies.
type surbMint struct {
	owner string
	delay time.Duration
	made  atomic.Int64
}

func (s *surbMint) NewSURB(ctx context.Context) (client.SURB, error) {
	if err := ctx.Err(); err != nil {
		return client.SURB{}, err
	}
	b := make([]byte, testSURBSize)
	copy(b, "surb:"+s.owner+":")
	var sb client.SURB
	_, _ = crand.Read(sb.ID[:])
	copy(b[testSURBSize-16:], sb.ID[:])
	sb.Bytes, sb.Delay = b, s.delay
	s.made.Add(1)
	return sb, nil
}

type testNet struct {
	t        testing.TB
	mu       sync.Mutex
	rnd      *rand.Rand
	loss     float64
	maxDelay time.Duration
	nodes    map[string]*testNode
	sent     atomic.Int64
	dropped  atomic.Int64
	wg       sync.WaitGroup
}

type testNode struct {
	name   string
	q      *Queue
	mint   *surbMint
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu        sync.Mutex
	got       map[MsgID][]byte
	gotCount  map[MsgID]int
	outcomes  map[MsgID]error
	onMessage func(Message)
}

func newTestNet(t testing.TB, loss float64, maxDelay time.Duration) *testNet {
	n := &testNet{t: t, rnd: rand.New(rand.NewPCG(7, 9)), loss: loss, maxDelay: maxDelay, nodes: map[string]*testNode{}}
	t.Cleanup(func() {
		for _, nd := range n.nodes {
			nd.stop()
		}
		n.wg.Wait()
		for _, nd := range n.nodes {
			_ = nd.q.Close()
		}
	})
	return n
}

func testConfig(dir, name string) Config {
	return Config{
		Path:          filepath.Join(dir, name+".db"),
		PayloadSize:   2030,
		ForwardDelay:  10 * time.Millisecond,
		ReplyGrace:    100 * time.Millisecond,
		NeedAfter:     150 * time.Millisecond,
		PacketPenalty: time.Millisecond,
	}
}

// add starts node name with cfg (its SURBs and OnOutcome are filled in).
func (n *testNet) add(name string, cfg Config) *testNode {
	nd := &testNode{name: name, mint: &surbMint{owner: name, delay: 10 * time.Millisecond},
		got: map[MsgID][]byte{}, gotCount: map[MsgID]int{}, outcomes: map[MsgID]error{}}
	cfg.SURBs = nd.mint
	cfg.OnOutcome = func(o Outcome) {
		nd.mu.Lock()
		nd.outcomes[o.ID] = o.Err
		nd.mu.Unlock()
	}
	q, err := Open(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	nd.q = q
	n.mu.Lock()
	n.nodes[name] = nd
	n.mu.Unlock()
	nd.start(n)
	return nd
}

func (nd *testNode) start(n *testNet) {
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel = cancel
	nd.done.Add(2)
	go func() {
		defer nd.done.Done()
		_ = nd.q.Run(ctx)
	}()
	go func() { // the payload stream: one slot after another
		defer nd.done.Done()
		for ctx.Err() == nil {
			p, ok := nd.q.Next(time.Now())
			if !ok {
				time.Sleep(200 * time.Microsecond)
				continue
			}
			n.deliver(nd.name, p)
		}
	}()
}

func (nd *testNode) stop() {
	if nd.cancel != nil {
		nd.cancel()
		nd.done.Wait()
		nd.cancel = nil
	}
}

func (n *testNet) deliver(from string, p Packet) {
	n.sent.Add(1)
	to := string(p.To)
	if p.SURB != nil {
		owner, _, ok := strings.Cut(strings.TrimPrefix(string(p.SURB), "surb:"), ":")
		if !ok {
			n.t.Errorf("ack through a SURB we did not make")
			return
		}
		to = owner
	}
	n.mu.Lock()
	drop := n.rnd.Float64() < n.loss
	delay := time.Duration(n.rnd.Int64N(int64(n.maxDelay) + 1))
	dst := n.nodes[to]
	n.mu.Unlock()
	if drop || dst == nil {
		n.dropped.Add(1)
		return
	}
	n.wg.Add(1)
	time.AfterFunc(delay, func() {
		defer n.wg.Done()
		msgs, err := dst.q.Handle(from, p.Payload)
		if err != nil {
			n.t.Errorf("%s handling a payload from %s: %v", to, from, err)
		}
		dst.mu.Lock()
		for _, m := range msgs {
			dst.got[m.ID] = m.Body
			dst.gotCount[m.ID]++
			if dst.onMessage != nil {
				dst.onMessage(m)
			}
		}
		dst.mu.Unlock()
	})
}

// waitFor polls cond until it holds or the (generous) timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func randomBody(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}
