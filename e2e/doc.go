// Package e2e is Strata's end-to-end encryption layer (seed layers 3a and
// 3e): MLS groups (RFC 9420), contacts and rooms.
//
// It owns:
//   - mls.go: the small Backend/Group interface over an MLS implementation,
//     so the library can be replaced; mlsgo.go implements it over
//     github.com/thomas-vilte/mls-go, cipher suite 1, PrivateMessages only.
//   - order.go: serverless commit ordering (a deterministic winner per epoch,
//     rollback of losers).
//   - card.go: contact cards, their canonical encoding and text code.
//   - manager.go: rooms (1:1 chats are 2-member rooms), delivery
//     through the Transport interface, history.
//   - store.go: the bbolt store, encrypted at rest with a passphrase key
//     (argon2id, XChaCha20-Poly1305).
//
// docs/e2e.md specifies the wire formats and the design. The package does
// not touch the network: Transport is implemented by the caller (client and
// mailbox layers). It must not import node, relay, mailbox, client or
// testnet.
package e2e
