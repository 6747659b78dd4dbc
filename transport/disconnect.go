package transport

import "fmt"

// Disconnect closes every connection to a node. The node stays in the send
// pool if it was added with AddPeer, so a later Send dials it again; the
// other side's Disconnected hook runs as for any closed connection. A
// client uses it to leave its old home relay, which then stops pushing to
// it.
func (h *Host) Disconnect(id NodeID) error {
	pid, err := h.peerID(id)
	if err != nil {
		return err
	}
	if err := h.host.Network().ClosePeer(pid); err != nil {
		return fmt.Errorf("transport: disconnect %v: %w", id, err)
	}
	return nil
}
