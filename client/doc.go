// Package client is Strata's mix client (seed layers 2b and 2c): it keeps
// one connection to a home relay, picks routes through the strata
// (uniformly over the restricted routes of the epoch's topology), builds
// packets and SURBs, runs the Loopix payload, loop and drop streams, and
// keeps the SURB unwinding database that opens replies (surbdb.go).
//
// It also holds the relay side of home delivery (home.go): the tokens SURBs
// name at their last hop and the push of their packets down a client's
// connection, which package node wires into a relay.
//
// The file order reads as the client works: client.go (API, routes),
// streams.go (slots, packets, pushes), loopix.go (the Poisson schedule),
// surbdb.go, home.go. It may import sphinx, transport and pki; it must not
// import relay, queue, mailbox or e2e (those sit above it, or beside it).
package client
