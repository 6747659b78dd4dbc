// Package queue is Strata's per-recipient message queue (seed layer 3b): it
// sits between applications and the mix client, splits messages into
// RaptorQ-coded chunks sized to packet payloads, orders them by QoS class
// and size, packs chunks, acks and SURBs into the packet slots the client's
// Loopix payload stream offers, and resends until acknowledged.
//
// Files, in the order a message travels: queue.go (Config, Put, Run, the
// rounds and their timers, Next and packing, acks at the sender), plan.go
// (symbol size, symbols per packet, repair overhead for the measured loss),
// fec.go (RaptorQ over xssnick/raptorq with the K' workaround for its two
// defects), wire.go (the payload format: chunk, SURB and ack items),
// receive.go (Handle: reassembly, duplicates, caps, acks and need requests
// through SURBs), store.go (the bbolt file of outbound messages), source.go
// (the client.Source adapter). docs/queue.md describes the design and the
// wire format byte by byte; testdata/vectors.json has vectors.
//
// The queue owns its bbolt file and nothing else: it never sends on its
// own (the client pulls packets with Next, at its Poisson slots), never
// addresses mailboxes (a Recipient is opaque; Source.Route maps it), and
// never opens payloads beyond its own format. It may import sphinx and
// client; it must not import relay, mailbox, e2e or node, nor libp2p.
package queue
