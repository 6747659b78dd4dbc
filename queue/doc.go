// Package queue is Strata's per-recipient message queue (seed layer 3b): it
// sits between applications and the mix client, splits messages into
// RaptorQ-coded chunks sized to packet payloads, orders them by QoS class
// and size, packs chunks, acks and SURBs into the packet slots the client's
// Loopix payload stream offers, and resends until acknowledged.
//
// So far it holds the erasure-coding layer (fec.go). It may import sphinx
// and client; it must not import relay, mailbox or e2e.
package queue
