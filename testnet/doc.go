// Package testnet runs a whole Strata network on one machine — the main job
// a new user starts with `strata testnet`: an embedded single-validator
// CometBFT chain running the relay PKI, relays that register and are sorted
// into strata, mailbox nodes, and demo clients exchanging messages through
// them, all on loopback with real libp2p hosts and real on-disk state. It
// also serves the web dashboard (dashboard.go and the embedded web/ tree:
// no external resources, so the page works offline) and keeps the
// end-to-end statistics (stats.go).
//
// It owns orchestration and presentation only: it starts nodes through
// package node and the libraries' public APIs and holds no protocol logic.
// Nothing imports it but cmd/strata and its own tests.
package testnet
