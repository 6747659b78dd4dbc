// Package mailbox is Strata's store-and-forward layer (seed layers 3c and
// 3d): mailbox nodes that hold ciphertext under unlinkable mailbox ids and
// deliver it through SURBs their owners stock, and the client side that keeps
// them stocked.
//
// It owns the node's storage (store.go: bbolt, fsync before acknowledging,
// quotas, retention), the deletion filter (bloom.go), the request/response
// wire format (wire.go, response.go), the auth plug-in interface (auth.go),
// the node service (node.go: executes requests, pushes through stocked SURBs
// with a reserve kept to ask for more, answers errors through the sender's
// SURB), the node's one way out (send.go: replies and the loop cover of
// SendCover go only to relays of the first stratum, FirstHops, and never
// wait on a link) and the owner side (owner.go: create, stock, fetch,
// delete, Put).
// docs/mailbox.md specifies the protocol, the SURB stock policy and the
// node's behaviour.
//
// A node's receive path is a relay pipeline (package relay, wired by package
// node) calling Node.Handle; its replies leave through NodeConfig.Send. The
// package may import sphinx and client (and queue); it must not import
// relay, node or e2e, and it does not touch the network itself.
package mailbox
