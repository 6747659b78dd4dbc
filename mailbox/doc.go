// Package mailbox is Strata's store-and-forward layer (seed layers 3c and
// 3d): mailbox nodes that hold ciphertext under unlinkable mailbox ids and
// deliver it through SURBs their owners stock, and the client side that keeps
// them stocked.
//
// So far it holds the node's storage (store.go) and the deletion filter
// (bloom.go). It may import sphinx, client and queue; it must not import
// relay or e2e.
package mailbox
