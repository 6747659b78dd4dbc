// Package transport carries Strata's fixed-size mix packets between nodes over
// libp2p.
//
// The package owns the libp2p hosts (TCP and QUIC listeners, TLS 1.3 security
// with opt-in Noise, yamux), the mix protocol /strata/mix/1 and its framing
// (packets and entry frames), the request protocols mounted with
// [Host.Handle], the pool of per-peer send queues with redial, backoff and
// the unreachable-peer policy, the policy for peers that send bad input,
// node identity keys and their file format, and the node id.
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
// [ErrQueueFull], Send waits only for its own context. A peer whose stream
// cannot be opened is unreachable: its queue is discarded and sends to it
// fail at once with [ErrUnreachable] until its redial backoff expires, when
// the next send is let through to try again. Received packets are handed to
// [Config.Handler], which borrows the bytes for the duration of the call, so
// the receive path allocates nothing per packet.
//
// # Entry frames
//
// [Host.TrySendVia] sends an entry frame, next hop ‖ packet, on the same
// stream: it asks the peer to forward the packet to the next hop. A client
// sends through its home relay this way, so first-stratum relays never see
// it. Only a host with [Config.Entry] accepts entry frames; what it forwards
// is its caller's policy.
//
// # Requests
//
// [Host.Handle] and [Host.Request] carry one small request and its answer
// (at most [MaxRequestSize] bytes each) on a stream of their own over the
// same authenticated connections, with deadlines on both sides; a refusal
// is [ErrRequestRefused].
//
// # Security
//
// By default hosts offer only TLS 1.3 on TCP, and QUIC; both negotiate the
// hybrid X25519MLKEM768 key exchange. libp2p's choice of security protocol
// is unauthenticated, so offering nothing else is what makes the links
// impossible to downgrade; Noise is classical and only used when
// [Config.Security] lists it ([NodeSecurity]). Without Noise a host also
// refuses any connection whose TLS key exchange was not X25519MLKEM768.
//
// The wire formats, the pool, backoff and unreachable policy, the bad-input
// policy, the security policy and what each adversary can still do at this
// layer are specified in docs/transport.md.
package transport
