package transport

import "github.com/libp2p/go-libp2p/core/host"

// LibP2P returns the libp2p host under h, for protocols other packages
// mount on the same identity and connections (the PKI's probe answer).
// Callers must not close it; Close h instead.
func (h *Host) LibP2P() host.Host { return h.host }
