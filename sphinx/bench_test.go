package sphinx

import (
	"github.com/cloudflare/circl/dh/x25519"
	"testing"
)

func benchSetup(b *testing.B) (*Format, []testNode, []byte) {
	f := testFormat(b)
	rnd := testRand(100)
	nodes := testNodes(b, rnd, f.Geometry().MaxHops)
	pkt, _, err := f.NewPacket(rnd, pathOf(nodes), DeliverToMailbox(), testDelay, []byte("benchmark"))
	if err != nil {
		b.Fatal(err)
	}
	return f, nodes, pkt
}

// BenchmarkUnwrap measures one relay hop: a 5-hop header and a 2 KB payload,
// processed in place.
func BenchmarkUnwrap(b *testing.B) {
	f, nodes, pkt := benchSetup(b)
	buf := make([]byte, len(pkt))
	var res Result
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, pkt)
		if err := f.Unwrap(nodes[0].priv, testDelay, buf, &res); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkt/s")
}

// BenchmarkUnwrapParallel measures unwrap throughput on all cores.
func BenchmarkUnwrapParallel(b *testing.B) {
	f, nodes, pkt := benchSetup(b)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, len(pkt))
		var res Result
		for pb.Next() {
			copy(buf, pkt)
			if err := f.Unwrap(nodes[0].priv, testDelay, buf, &res); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkt/s")
}

// BenchmarkCreate measures building a forward packet over 5 hops.
func BenchmarkCreate(b *testing.B) {
	f, nodes, _ := benchSetup(b)
	rnd := testRand(101)
	path := pathOf(nodes)
	msg := make([]byte, f.Geometry().PayloadCapacity())
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.NewPacket(rnd, path, DeliverToMailbox(), testDelay, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateSURB measures building a 5-hop SURB.
func BenchmarkCreateSURB(b *testing.B) {
	f, nodes, _ := benchSetup(b)
	rnd := testRand(102)
	path := pathOf(nodes)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := f.NewSURB(rnd, path, DeliveryToken{}, testDelay); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReply measures what a replier pays to use a SURB.
func BenchmarkReply(b *testing.B) {
	f, nodes, _ := benchSetup(b)
	rnd := testRand(103)
	surb, _, _, err := f.NewSURB(rnd, pathOf(nodes), DeliveryToken{}, testDelay)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, f.Geometry().PayloadCapacity())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.NewReply(surb, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenReply measures what a SURB's creator pays to read a reply.
func BenchmarkOpenReply(b *testing.B) {
	f, nodes, _ := benchSetup(b)
	rnd := testRand(104)
	surb, keys, _, err := f.NewSURB(rnd, pathOf(nodes), DeliveryToken{}, testDelay)
	if err != nil {
		b.Fatal(err)
	}
	pkt, _ := f.NewReply(surb, []byte("r"))
	var res Result
	for _, n := range nodes {
		if err := f.Unwrap(n.priv, testDelay, pkt, &res); err != nil {
			b.Fatal(err)
		}
	}
	delivered := append([]byte(nil), res.Payload...)
	buf := make([]byte, len(delivered))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, delivered)
		if _, err := f.OpenReply(keys, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkX25519 measures one circl X25519 scalar multiplication, the
// floor of Unwrap (which needs two).
func BenchmarkX25519(b *testing.B) {
	var out, scalar, point x25519.Key
	scalar[0], point[0] = 7, 9
	for b.Loop() {
		x25519.Shared(&out, &scalar, &point)
	}
}
