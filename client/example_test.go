package client

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/strata-mix/strata/transport"
)

// Example runs two clients against a small network on loopback (three
// strata of two relays and a mailbox node, assembled by this package's
// tests): Bob sends a packet to the mailbox node, then Alice makes a SURB
// and Bob replies through it without learning where Alice is.
func Example() {
	network, err := startNet(defaultNet())
	if err != nil {
		log.Fatal(err)
	}
	defer network.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	start := func(home int) *Client {
		key, err := transport.GenerateIdentity()
		if err != nil {
			log.Fatal(err)
		}
		dir, err := tempDir()
		if err != nil {
			log.Fatal(err)
		}
		c, err := New(ctx, Config{
			Identity: key, DataDir: dir,
			Home:     network.homeInfo(home), // the relay pushing replies to us
			Topology: network.Topology,       // a pki.TopologyCache's Current in a real node
		})
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	alice, bob := start(0), start(5)
	defer alice.Close()
	defer bob.Close()

	// A forward packet: three strata, then the mailbox node.
	sent, err := bob.Send(ctx, ToMailbox(network.mboxes[0].id()), []byte("for a mailbox"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hops:", len(sent.Route), "expected arrival known:", !sent.Expected.IsZero())
	fmt.Printf("the mailbox node got %q\n", <-network.mboxes[0].inbox)

	// A reply through a SURB: its keys are on Alice's disk before she
	// hands it out.
	surb, err := alice.NewSURB(ctx)
	if err != nil {
		log.Fatal(err)
	}
	dest, err := ViaSURB(surb.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := bob.Send(ctx, dest, []byte("hello Alice")); err != nil {
		log.Fatal(err)
	}
	select {
	case r := <-alice.Receive():
		fmt.Printf("Alice got %q through SURB %v\n", r.Payload, r.SURB == surb.ID)
	case <-ctx.Done():
		log.Fatal("no reply")
	}
	// Output:
	// hops: 4 expected arrival known: true
	// the mailbox node got "for a mailbox"
	// Alice got "hello Alice" through SURB true
}
