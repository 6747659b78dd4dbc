package transport_test

import (
	"context"
	"fmt"
	"log"

	"github.com/strata-mix/strata/transport"
)

// Two hosts on loopback: b adds a as a peer and sends it one packet.
func Example() {
	ctx := context.Background()
	got := make(chan string, 1)

	keyA, err := transport.GenerateIdentity()
	if err != nil {
		log.Fatal(err)
	}
	a, err := transport.New(ctx, transport.Config{
		Identity:   keyA,
		PacketSize: 2341,
		Handler: func(from transport.NodeID, pkt []byte) {
			// pkt is borrowed: use or copy it before returning.
			got <- fmt.Sprintf("%d bytes, first %d", len(pkt), pkt[0])
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	keyB, err := transport.GenerateIdentity()
	if err != nil {
		log.Fatal(err)
	}
	b, err := transport.New(ctx, transport.Config{Identity: keyB, PacketSize: 2341})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	if err := b.AddPeer(a.PeerInfo()); err != nil {
		log.Fatal(err)
	}
	pkt := make([]byte, 2341)
	pkt[0] = 42
	if err := b.Send(ctx, a.ID(), pkt); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output: 2341 bytes, first 42
}
