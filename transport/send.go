package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// errStopped ends a sender whose peer left the pool or whose host closed.
var errStopped = errors.New("sender stopped")

// TrySend queues a copy of pkt for the node and returns at once. It returns
// an error wrapping ErrQueueFull when the node's queue is full (the packet is
// dropped and counted), ErrUnreachable while the node is unreachable (see
// ErrUnreachable), ErrUnknownPeer when the node was never added and is not
// connected, and ErrPacketSize when pkt is not PacketSize bytes. A nil
// error means queued, not delivered: the transport is lossy, as a mix network
// is. A relay forwards with TrySend so that one slow or dead successor never
// holds up the others.
func (h *Host) TrySend(to NodeID, pkt []byte) error {
	p, b, probe, err := h.prepare(to, pkt, nil)
	if err != nil {
		return err
	}
	return h.enqueue(p, b, probe)
}

// TrySendVia queues for the node via an entry frame asking it to forward pkt
// to the node next, and returns at once. via must accept entry frames
// (Config.Entry); a host that does not disconnects and bans this one. The
// frame goes on via's ordinary send queue, in order with packets sent to via,
// and the errors are TrySend's: ErrQueueFull, ErrUnreachable,
// ErrUnknownPeer (via is unknown), ErrPacketSize, ErrClosed. A client sends
// through its home relay with TrySendVia so that first-stratum relays see
// only the home.
func (h *Host) TrySendVia(via, next NodeID, pkt []byte) error {
	p, b, probe, err := h.prepare(via, pkt, &next)
	if err != nil {
		return err
	}
	return h.enqueue(p, b, probe)
}

// enqueue puts b on p's queue without waiting.
func (h *Host) enqueue(p *peerState, b *[]byte, probe bool) error {
	select {
	case p.queue <- b:
		return nil
	default:
		h.putBuf(b)
		p.unprobe(probe)
		h.m.queueFull.Inc()
		return fmt.Errorf("transport: send to %v: %w", p.id, ErrQueueFull)
	}
}

// Send is TrySend that waits while the node's queue is full, until ctx is
// done (the error then wraps both ErrQueueFull and ctx.Err()). Only the
// calling goroutine waits; other peers' queues are not affected. Like
// TrySend, it fails at once with ErrUnreachable while the node is
// unreachable.
func (h *Host) Send(ctx context.Context, to NodeID, pkt []byte) error {
	p, b, probe, err := h.prepare(to, pkt, nil)
	if err != nil {
		return err
	}
	select {
	case p.queue <- b:
		return nil
	default:
	}
	select {
	case p.queue <- b:
		return nil
	case <-ctx.Done():
		h.putBuf(b)
		p.unprobe(probe)
		h.m.queueFull.Inc()
		return fmt.Errorf("transport: send to %v: %w: %w", to, ErrQueueFull, ctx.Err())
	case <-p.done:
		h.putBuf(b)
		return fmt.Errorf("transport: send to %v: %w (left the pool)", to, ErrUnknownPeer)
	case <-h.ctx.Done():
		h.putBuf(b)
		return fmt.Errorf("transport: send to %v: %w", to, ErrClosed)
	}
}

// prepare finds the node's pool entry, starting its sender on first use,
// checks that the node is not unreachable, and copies the frame body into a
// pooled buffer: pkt, or next || pkt for an entry frame when next is not nil.
// probe reports that this packet is the one allowed through to redial an
// unreachable node; if it is not queued after all, the caller must call
// p.unprobe(true).
func (h *Host) prepare(to NodeID, pkt []byte, next *NodeID) (p *peerState, b *[]byte, probe bool, err error) {
	if len(pkt) != h.cfg.PacketSize {
		return nil, nil, false, fmt.Errorf("transport: send to %v: %w: %d bytes, want %d", to, ErrPacketSize, len(pkt), h.cfg.PacketSize)
	}
	h.mu.RLock()
	if h.closed {
		h.mu.RUnlock()
		return nil, nil, false, fmt.Errorf("transport: send to %v: %w", to, ErrClosed)
	}
	p = h.peers[to]
	if p == nil {
		h.mu.RUnlock()
		if to == h.id {
			return nil, nil, false, fmt.Errorf("transport: send to %v: %w", to, ErrSelf)
		}
		return nil, nil, false, fmt.Errorf("transport: send to %v: %w", to, ErrUnknownPeer)
	}
	// Starting under the read lock orders wg.Add before Close's wg.Wait.
	p.start.Do(func() {
		p.queue = make(chan *[]byte, h.cfg.SendQueue)
		h.wg.Add(1)
		go h.runSender(p)
	})
	h.mu.RUnlock()
	ok, probe := p.admit(time.Now())
	if !ok {
		h.m.unreachable.Inc()
		return nil, nil, false, fmt.Errorf("transport: send to %v: %w", to, ErrUnreachable)
	}
	if next == nil {
		b = h.bufs.Get().(*[]byte)
		copy(*b, pkt)
		return p, b, probe, nil
	}
	b = h.entryBufs.Get().(*[]byte)
	copy(*b, next[:])
	copy((*b)[EntryHeaderSize:], pkt)
	return p, b, probe, nil
}

// runSender owns the node's outbound stream: it opens the stream when a
// packet arrives, drains the queue into it and reopens it, after a backoff
// wait, when it breaks. When opening fails the node becomes unreachable:
// the queue is discarded and sends fail until the backoff expires, when the
// next packet sent is let through to try again.
func (h *Host) runSender(p *peerState) {
	defer h.wg.Done()
	defer h.dropQueued(p, dropPeerRemoved)
	var bo backoff
	broke := false // the last stream broke: wait before reopening
	for {
		var b *[]byte
		select {
		case b = <-p.queue:
		case <-p.done:
			return
		case <-h.ctx.Done():
			return
		}
		if p.refusing(time.Now()) {
			// Queued by a send that raced with the node becoming
			// unreachable.
			h.putBuf(b)
			h.m.dropped.WithLabelValues(dropUnreachable).Inc()
			continue
		}
		if broke {
			if err := bo.wait(h.ctx, p.done); err != nil {
				h.putBuf(b)
				h.m.dropped.WithLabelValues(dropPeerRemoved).Inc()
				return
			}
		}
		s, err := h.openStream(p, bo.attempts > 0)
		if err != nil {
			h.putBuf(b)
			if h.stopped(p) {
				h.m.dropped.WithLabelValues(dropPeerRemoved).Inc()
				return
			}
			bo.failed()
			retry := bo.delay()
			p.setUnreachable(time.Now().Add(retry))
			n := 1 + h.dropQueued(p, dropUnreachable)
			h.m.dropped.WithLabelValues(dropUnreachable).Inc()
			h.log.Debug("peer unreachable", "peer", p.id, "attempt", bo.attempts, "dropped", n, "retry_in", retry, "err", err)
			broke = false
			continue
		}
		p.setReachable()
		sent, err := h.pump(p, s, b)
		_ = s.Reset()
		if errors.Is(err, errStopped) {
			return
		}
		h.m.streamErrors.Inc()
		h.log.Debug("stream to peer broke", "peer", p.id, "frames", sent, "err", err)
		if sent > 0 {
			bo.reset()
		}
		bo.failed()
		broke = true
	}
}

// stopped reports whether p's sender must end: p left the pool or the host
// closed.
func (h *Host) stopped(p *peerState) bool {
	select {
	case <-p.done:
		return true
	default:
		return h.ctx.Err() != nil
	}
}

// openStream makes one attempt to open a mix stream to the node, over an
// existing connection if there is one, else by dialing.
func (h *Host) openStream(p *peerState, retry bool) (network.Stream, error) {
	if retry {
		h.m.redials.Inc()
	}
	dialing := h.host.Network().Connectedness(p.pid) != network.Connected
	if dialing {
		h.mu.RLock()
		h.setDialAddrsLocked(p)
		h.mu.RUnlock()
	}
	// The pool is the backoff authority: swarm's own dial backoff would
	// hold a restarted peer off for seconds after our timer fired.
	ctx := network.WithForceDirectDial(h.ctx, "strata pool")
	ctx, cancel := context.WithTimeout(ctx, h.cfg.DialTimeout)
	defer cancel()
	s, err := h.host.NewStream(ctx, p.pid, ProtocolID)
	if dialing {
		if err != nil {
			h.m.dials.WithLabelValues("error").Inc()
		} else {
			h.m.dials.WithLabelValues("ok").Inc()
		}
	}
	return s, err
}

// pump writes frames to s until a write fails or the sender stops. Frames are
// batched in a buffered writer flushed whenever the queue runs empty, so a
// busy peer gets large writes and an idle one gets no added latency. It
// returns how many frames it flushed.
func (h *Host) pump(p *peerState, s network.Stream, b *[]byte) (int, error) {
	w := bufio.NewWriterSize(s, writeBufferSize)
	sent := 0
	for {
		if err := s.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout)); err != nil {
			h.putBuf(b)
			return sent, err
		}
		n, entries, bytes := 0, 0, 0
	batch:
		for {
			err := writeFrame(w, *b)
			bytes += frameHeaderSize + len(*b)
			if len(*b) != h.cfg.PacketSize {
				entries++
			}
			h.putBuf(b)
			if err != nil {
				return sent, h.writeError(err)
			}
			n++
			if n == maxBatchFrames {
				break
			}
			select {
			case b = <-p.queue:
			default:
				break batch
			}
		}
		if err := w.Flush(); err != nil {
			return sent, h.writeError(err)
		}
		sent += n
		h.m.framesOut.Add(float64(n))
		h.m.bytesOut.Add(float64(bytes))
		if entries > 0 {
			h.m.entryOut.Add(float64(entries))
		}
		select {
		case b = <-p.queue:
		case <-p.done:
			return sent, errStopped
		case <-h.ctx.Done():
			return sent, errStopped
		}
	}
}

func (h *Host) writeError(err error) error {
	if h.ctx.Err() != nil {
		return errStopped
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		h.m.writeTimeouts.Inc()
	}
	return err
}

// dropQueued returns the buffers left in a sender's queue, counts them as
// dropped for reason and returns how many there were.
func (h *Host) dropQueued(p *peerState, reason string) int {
	n := 0
	for {
		select {
		case b := <-p.queue:
			h.putBuf(b)
			n++
		default:
			if n > 0 {
				h.m.dropped.WithLabelValues(reason).Add(float64(n))
			}
			return n
		}
	}
}

// putBuf returns a frame body buffer to the pool of its size.
func (h *Host) putBuf(b *[]byte) {
	if len(*b) == h.cfg.PacketSize {
		h.bufs.Put(b)
	} else {
		h.entryBufs.Put(b)
	}
}
