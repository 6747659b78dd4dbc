// Package pki is Strata's relay PKI: the CometBFT application that registers
// relays and mailboxes, validates them, publishes their per-epoch mix keys and
// VRF outputs, and the rules every party applies to turn that registry into
// an epoch's topology — strata (layers) sorted by VRF output (a relay that
// withheld its output at a fallback key drawn from the beacon), beacons
// mixed from the VRF outputs, and the restricted routes between strata.
//
// The package owns, one concern a file:
//
//   - the topology rules (topology.go): pure functions of the registry and
//     the epoch beacon, shared by the chain, relays, clients and the
//     simulator so that all of them agree on the same graph;
//   - the transactions and their canonical encoding (tx.go, wire.go,
//     codes.go), the intention's proof of work (pow.go) and the ECVRF
//     (vrf.go);
//   - the deterministic state machine (machine.go for transactions,
//     epoch.go for blocks and epochs, state.go and kv.go for the state),
//     which reads nothing but its state and the block, so unit tests drive
//     it without a node;
//   - the topology document (document.go);
//   - the ABCI application (app.go, query.go, apphash.go) and its bbolt
//     store (store.go);
//   - the validator: CometBFT in-process (node.go), the attester that
//     probes nodes over libp2p (attester.go, probe.go);
//   - the node side: the agent that registers a relay or mailbox and keeps
//     its keys and VRF on chain (agent.go), and the client side that reads
//     the chain through a light client (chain.go, verify.go, cache.go).
//
// The byte layouts and rules are specified in docs/pki.md.
//
// The package may import sphinx for key and id types; it must not import
// relay, client, queue, mailbox or e2e. Its probe (probe.go) uses go-libp2p
// directly until transport exposes a way to mount extra protocols on its
// host.
package pki
