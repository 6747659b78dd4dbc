package transport

import (
	"errors"
	"io"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// counterBatch bounds how many received frames go uncounted while a stream
// stays busy.
const counterBatch = 64

// handleStream reads one inbound mix stream until it ends, handing each
// packet to the Handler and each entry frame to the EntryHandler. It runs on the goroutine libp2p gives the stream.
func (h *Host) handleStream(s network.Stream) {
	pid := s.Conn().RemotePeer()
	from, err := nodeIDOfLibp2pKey(s.Conn().RemotePublicKey())
	if err != nil {
		_ = s.Reset()
		return
	}
	ok, over := h.enterStream(pid)
	if !ok {
		_ = s.Reset()
		if over {
			h.disconnect(pid, from, reasonTooManyStrs)
		}
		return
	}
	defer h.leaveStream(pid)
	// The acceptor never writes on a mix stream.
	_ = s.CloseWrite()

	fr := newFrameReader(s, h.cfg.PacketSize, h.cfg.Entry != nil)
	n, entries, bytes := 0, 0, 0
	count := func() {
		if n > 0 {
			h.m.framesIn.Add(float64(n))
			h.m.bytesIn.Add(float64(bytes))
			if entries > 0 {
				h.m.entryIn.Add(float64(entries))
			}
			n, entries, bytes = 0, 0, 0
		}
	}
	defer count()
	for {
		body, err := fr.next()
		if err != nil {
			if errors.Is(err, ErrFrameSize) {
				h.m.badFrames.WithLabelValues(reasonFrameSize).Inc()
				h.log.Warn("bad frame", "peer", from, "err", err)
				_ = s.Reset()
				h.disconnect(pid, from, reasonFrameSize)
				return
			}
			if errors.Is(err, io.EOF) {
				_ = s.Close()
			} else {
				_ = s.Reset()
			}
			return
		}
		if len(body) == h.cfg.PacketSize {
			h.cfg.Handler(from, body)
		} else {
			// The reader returns entry frames only when Entry is set.
			h.cfg.Entry(from, NodeID(body[:EntryHeaderSize]), body[EntryHeaderSize:])
			entries++
		}
		n++
		bytes += frameHeaderSize + len(body)
		if n == counterBatch || fr.buffered() == 0 {
			count()
		}
	}
}

// enterStream admits one more inbound stream from pid. ok is false when the
// stream must be refused; over is then true if the peer exceeded its limit.
func (h *Host) enterStream(pid peer.ID) (ok, over bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false, false
	}
	if h.inbound[pid] >= h.cfg.MaxStreamsPerPeer {
		return false, true
	}
	h.inbound[pid]++
	h.wg.Add(1)
	h.m.inboundStreams.Inc()
	return true, false
}

func (h *Host) leaveStream(pid peer.ID) {
	h.mu.Lock()
	if h.inbound[pid]--; h.inbound[pid] <= 0 {
		delete(h.inbound, pid)
	}
	h.mu.Unlock()
	h.m.inboundStreams.Dec()
	h.wg.Done()
}

// disconnect closes every connection to a misbehaving peer and bans it for
// BanDuration. Its streams reset, so its readers end; other peers are not
// touched.
func (h *Host) disconnect(pid peer.ID, id NodeID, reason string) {
	h.m.disconnects.WithLabelValues(reason).Inc()
	h.log.Warn("disconnecting peer", "peer", id, "reason", reason)
	h.ban(pid)
	_ = h.host.Network().ClosePeer(pid)
}
