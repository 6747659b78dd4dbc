// Package client is Strata's mix client (seed layers 2b and 2c): it keeps
// one connection to a home relay, picks routes through the strata
// (uniformly over the restricted routes of the epoch's topology), builds
// packets and SURBs, runs the Loopix payload, loop and drop streams, and
// keeps the SURB unwinding database that opens replies (surbdb.go).
//
// It also holds the relay side of home delivery (home.go): the tokens SURBs
// name at their last hop (HomeToken, derived from the client's and the
// home's node ids and the epoch, so nothing is bound or persisted) and the
// push of their packets, as push frames (EncodePush, ParsePush), down a
// client's connection. Package node wires Home into every relay. The
// packet message layout (Pad, Unpad) is shared with mailbox nodes.
//
// The package owns: the client API (Send, NewSURB, Receive, SetSource,
// SetHome, Stats), route choice, the Loopix schedule, the SURB database
// file surbs.db in Config.DataDir, the home token rule and the push frame
// format. It does not own the Sphinx format (sphinx), the topology and its
// graph (pki: routes come from pki.Graph.RandomRoute, never a copy), the
// connection machinery (transport), or what packets carry (queue,
// mailbox, e2e above it).
//
// The file order reads as the client works: client.go (API, routes),
// streams.go (slots, packets, pushes), loopix.go (the Poisson schedule),
// surbdb.go, home.go, metrics.go. It may import sphinx, transport and pki;
// it must not import relay, queue, mailbox or e2e (those sit above it, or
// beside it). Its tests import relay to run real relays.
//
// Wire formats, design, metrics and benchmark figures: docs/client.md;
// test vectors: testdata/vectors.json.
package client
