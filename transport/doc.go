// Package transport carries Strata's fixed-size mix packets between nodes over
// libp2p.
//
// The package owns the libp2p hosts (TCP and QUIC listeners, TLS 1.3 and Noise
// security, yamux), the mix protocol /strata/mix/1 and its framing, the pool
// of per-peer send queues with redial and backoff, the policy for peers that
// send bad input, node identity keys and their file format, and the node id.
// It is the only Strata package that imports libp2p: everything above it talks
// in terms of [NodeID], [PeerInfo] and byte slices. It must not import any
// other Strata package and knows nothing of Sphinx, the PKI or epochs; it moves
// opaque packets of one configured size.
//
// # Node identity
//
// A node's identity is its libp2p Ed25519 key. Its [NodeID] is the SHA-256
// digest of the raw 32-byte Ed25519 public key (RFC 8032 encoding, not the
// libp2p protobuf wrapping and not the libp2p peer id):
//
//	NodeID = SHA-256(ed25519 public key, 32 bytes)
//
// Identity keys are stored in a PEM file, see [EncodeIdentity].
//
// # Sending and receiving
//
// [Host.Send] and [Host.TrySend] copy the packet into a bounded per-peer
// queue; one goroutine per peer drains the queue into one long-lived stream,
// batching frames in a buffered writer that is flushed when the queue runs
// empty. A full queue never blocks other peers: TrySend reports
// [ErrQueueFull], Send waits only for its own context. Received packets are
// handed to [Config.Handler], which borrows the bytes for the duration of the
// call, so the receive path allocates nothing per packet.
//
// The wire format, the pool and backoff policy, the bad-input policy and the
// post-quantum key exchange status are specified in docs/transport.md.
package transport
