// Package pki is Strata's relay PKI: the CometBFT application that registers
// relays and mailboxes, validates them, publishes their per-epoch mix keys and
// VRF outputs, and the rules every party applies to turn that registry into
// an epoch's topology — strata (layers) sorted by VRF output and the
// restricted routes between them.
//
// The topology rules (topology.go) are pure functions of the registry and the
// epoch beacon, shared by the chain, relays, clients and the simulator so
// that all of them agree on the same graph. The package may import sphinx
// and transport for key and id types; it must not import relay, client,
// queue, mailbox or e2e.
package pki
