// Package relay is the mix relay node: its packet pipeline (receive →
// unwrap → replay check → delay → forward), the replay database, the delay
// scheduler, relay loop cover traffic and the relay's metrics.
//
// A packet's path through the code reads in file order: receive.go,
// unwrap.go, the Delayer (schedule*.go), forward.go; routes.go holds the
// restricted-route checks applied in receive.go and unwrap.go. Nothing on
// that path waits on one peer (Link.Send never waits). The relay talks to the
// network only through the Link interface and learns keys and topology from
// its caller (package node: the PKI chain or a static file), so neither can leak into the
// pipeline. It must not import client, queue, mailbox or e2e.
package relay
