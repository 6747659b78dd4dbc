// Package client is Strata's mix client (seed layers 2b and 2c): it keeps
// exactly one connection, to a home relay, sends every packet through it
// (entry frames the home forwards into the first stratum, so no other
// relay ever sees the client), reconnects and fails over by itself
// (homelink.go), picks routes through the strata
// (uniformly over the restricted routes of the epoch's topology), builds
// packets and SURBs, runs the Loopix payload, loop and drop streams, and
// keeps the SURB unwinding database that opens replies (surbdb.go).
//
// It also holds the relay side (home.go, homeentry.go): registration of a
// client's HomeSecret over RegisterProtocol (hometoken.go: the secret, the
// delivery tokens derived from it, the registration message), the push of
// DeliverClient packets, as push frames (EncodePush, ParsePush), down a
// registered client's connection, and the forwarding of its entry frames
// into the first stratum with route and rate checks. Package node wires
// Home into every relay. The packet message layout (Pad, Unpad) is shared
// with mailbox nodes.
//
// The package owns: the client API (Send, NewSURB, Receive, SetSource,
// SetHome, Stats), route choice, the Loopix schedule, the SURB database
// file surbs.db in Config.DataDir, the home secret and token rules, the
// registration message and the push frame format. It does not own the Sphinx format (sphinx), the topology and its
// graph (pki: routes come from pki.Graph.RandomRoute, never a copy), the
// connection machinery (transport), or what packets carry (queue,
// mailbox, e2e above it).
//
// The file order reads as the client works: client.go (API, routes),
// streams.go (slots, packets, pushes), homelink.go (reconnect, failover),
// loopix.go (the Poisson schedule), surbdb.go, hometoken.go, home.go,
// homeentry.go, homemetrics.go, metrics.go. It may import sphinx, transport and pki;
// it must not import relay, queue, mailbox or e2e (those sit above it, or
// beside it). Its tests import relay to run real relays.
//
// Wire formats, design, metrics and benchmark figures: docs/client.md;
// test vectors: testdata/vectors.json.
package client
