package pki

import (
	"context"
	"testing"
	"time"
)

// TestProbeAfterAFailedOneDialsAgain: a node down when probed and back
// a second later must be reachable by the next probe. The prober's libp2p
// host keeps a dial backoff per peer and address (5 s after the first
// failure, then 5 s + n² s); Prober.forget clears it, or a probe within
// that window would fail with "dial backoff" without dialling — at the
// attester's defaults the probe 5 s after a failure, in tests with
// RetryAfter 500 ms every probe for 5 s.
func TestProbeAfterAFailedOneDialsAgain(t *testing.T) {
	key := detKey("backoff", 0)
	h, err := StartProbeHost(key, testChainID)
	if err != nil {
		t.Fatal(err)
	}
	tcp := HostAddrs(h) // one TCP address on 127.0.0.1
	h.Close()
	p, err := NewProber(testChainID)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	probe := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return p.Probe(ctx, pubOf(key), tcp)
	}
	if err := probe(); err == nil {
		t.Fatal("a closed host answered")
	}
	h2, err := StartProbeHost(key, testChainID, tcp...)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	time.Sleep(time.Second)
	if err := probe(); err != nil {
		t.Fatalf("node back at %v a second after a failed probe: %v", tcp, err)
	}
}
