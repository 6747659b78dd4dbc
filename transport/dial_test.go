package transport

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

func TestDialRankerPrefersTCP(t *testing.T) {
	tcp := ma.StringCast("/ip4/127.0.0.1/tcp/4001")
	quic := ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1")
	got := tcpFirst([]ma.Multiaddr{quic, tcp})
	if len(got) != 2 || got[0].Delay != quicFallback || got[1].Delay != 0 {
		t.Fatalf("tcp and quic ranked %v, want quic after %v and tcp at once", got, quicFallback)
	}
	if got := tcpFirst([]ma.Multiaddr{quic}); len(got) != 1 || got[0].Delay != 0 {
		t.Fatalf("quic alone ranked %v, want at once", got)
	}
}
