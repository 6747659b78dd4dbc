package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// MaxRequestSize is the largest request or response body, in bytes.
const MaxRequestSize = 16 << 10

// requestHeaderSize is the length of the big-endian uint32 length prefix of
// a request or response message.
const requestHeaderSize = 4

// requestProtocolPrefix is the prefix every request protocol must have.
const requestProtocolPrefix = "/strata/"

// RequestHandler answers one request from a peer. req is the handler's to
// keep. A nil error sends resp (at most MaxRequestSize bytes, else the
// stream is reset); an error resets the stream, and the requester's Request
// returns an error wrapping ErrRequestRefused; the error itself is only
// logged, never sent. It runs on its own goroutine per request, at most
// Config.MaxStreamsPerPeer at once per peer, and must return within
// Config.RequestTimeout or its answer is lost. It must not call [Host.Close].
type RequestHandler func(from NodeID, req []byte) (resp []byte, err error)

// Handle mounts handler for protocol, replacing any earlier one; a nil
// handler removes it. Requests arrive on the connections the host already
// has (or that peers open), authenticated as for packets: from is the peer's
// node id. protocol must start with "/strata/" and must not be the mix
// protocol; Handle panics otherwise, as net/http.Handle does for a bad
// pattern.
func (h *Host) Handle(proto string, handler RequestHandler) {
	if !strings.HasPrefix(proto, requestProtocolPrefix) || proto == ProtocolID {
		panic(fmt.Sprintf("transport: Handle: protocol %q must start with %q and not be %s", proto, requestProtocolPrefix, ProtocolID))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if handler == nil {
		delete(h.handlers, proto)
		h.host.RemoveStreamHandler(protocol.ID(proto))
		return
	}
	h.handlers[proto] = handler
	h.host.SetStreamHandler(protocol.ID(proto), h.serveRequest)
}

// Request sends req to the node's handler for protocol and returns its
// response. It uses an open connection to the node if there is one, else it
// dials the addresses given to AddPeer. It gives up when ctx ends or after
// Config.RequestTimeout, whichever comes first (the error then wraps
// context.DeadlineExceeded or ctx.Err()). An error wrapping
// ErrRequestRefused means the node was reached but gave no answer: it does
// not handle protocol, its handler failed, it reset or ended the stream, or
// it sent more than MaxRequestSize bytes. A req over MaxRequestSize bytes
// fails at once with ErrRequestSize; an unknown node with ErrUnknownPeer.
func (h *Host) Request(ctx context.Context, to NodeID, proto string, req []byte) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("transport: request %s to %v: %w", proto, to, err)
	}
	if len(req) > MaxRequestSize {
		h.m.requestsOut.WithLabelValues(resultSize).Inc()
		return fail(fmt.Errorf("%w: %d bytes", ErrRequestSize, len(req)))
	}
	pid, err := h.requestPeer(to)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	s, err := h.host.NewStream(network.WithForceDirectDial(ctx, "strata request"), pid, protocol.ID(proto))
	if err != nil {
		switch {
		case ctx.Err() != nil:
			h.m.requestsOut.WithLabelValues(resultTimeout).Inc()
			return fail(fmt.Errorf("open stream: %w", ctx.Err()))
		case h.host.Network().Connectedness(pid) == network.Connected:
			// Connected, so the peer did not take the protocol.
			h.m.requestsOut.WithLabelValues(resultRefused).Inc()
			return fail(fmt.Errorf("%w: %w", ErrRequestRefused, err))
		}
		h.m.requestsOut.WithLabelValues(resultDial).Inc()
		return fail(err)
	}
	// The deadline bounds the blocking calls; AfterFunc also ends them when
	// ctx is cancelled before it.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(d)
	}
	resp, err := exchange(s, req)
	if err != nil {
		_ = s.Reset()
		if ctx.Err() != nil {
			h.m.requestsOut.WithLabelValues(resultTimeout).Inc()
			return fail(ctx.Err())
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			h.m.requestsOut.WithLabelValues(resultTimeout).Inc()
			return fail(fmt.Errorf("%w: %w", context.DeadlineExceeded, err))
		}
		h.m.requestsOut.WithLabelValues(resultRefused).Inc()
		return fail(fmt.Errorf("%w: %w", ErrRequestRefused, err))
	}
	_ = s.Close()
	h.m.requestsOut.WithLabelValues(resultOK).Inc()
	return resp, nil
}

// exchange writes req, closes the write side and reads the response.
func exchange(s network.Stream, req []byte) ([]byte, error) {
	if err := writeMessage(s, req); err != nil {
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		return nil, err
	}
	return readMessage(s)
}

// requestPeer finds the node's peer id and, when there is no connection to
// it, sets its dial addresses as the pool does.
func (h *Host) requestPeer(to NodeID) (peer.ID, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return "", ErrClosed
	}
	p := h.peers[to]
	if p == nil {
		if to == h.id {
			return "", ErrSelf
		}
		return "", ErrUnknownPeer
	}
	if h.host.Network().Connectedness(p.pid) != network.Connected {
		h.setDialAddrsLocked(p)
	}
	return p.pid, nil
}

// serveRequest answers one inbound request stream. It runs on the goroutine
// libp2p gives the stream.
func (h *Host) serveRequest(s network.Stream) {
	pid := s.Conn().RemotePeer()
	from, err := nodeIDOfLibp2pKey(s.Conn().RemotePublicKey())
	if err != nil || h.banned(pid) {
		h.m.requestsIn.WithLabelValues(resultBanned).Inc()
		_ = s.Reset()
		return
	}
	proto := string(s.Protocol())
	handler, ok := h.enterRequest(pid, proto)
	if !ok {
		h.m.requestsIn.WithLabelValues(resultBusy).Inc()
		_ = s.Reset()
		return
	}
	defer h.leaveRequest(pid)
	_ = s.SetDeadline(time.Now().Add(h.cfg.RequestTimeout))
	req, err := readMessage(s)
	if err != nil {
		result := resultRefused
		if errors.Is(err, ErrRequestSize) {
			result = resultSize
		}
		h.m.requestsIn.WithLabelValues(result).Inc()
		h.log.Debug("bad request", "peer", from, "protocol", proto, "err", err)
		_ = s.Reset()
		return
	}
	resp, err := handler(from, req)
	if err == nil && len(resp) > MaxRequestSize {
		err = fmt.Errorf("%w: response of %d bytes", ErrRequestSize, len(resp))
	}
	if err != nil {
		h.m.requestsIn.WithLabelValues(resultRefused).Inc()
		h.log.Debug("request refused", "peer", from, "protocol", proto, "err", err)
		_ = s.Reset()
		return
	}
	if err := writeMessage(s, resp); err != nil {
		h.m.requestsIn.WithLabelValues(resultTimeout).Inc()
		_ = s.Reset()
		return
	}
	_ = s.Close()
	h.m.requestsIn.WithLabelValues(resultOK).Inc()
}

// enterRequest admits one more request from pid and returns the handler
// for proto; ok is false when the host is closed, the handler was removed or
// the peer already has MaxStreamsPerPeer requests running.
func (h *Host) enterRequest(pid peer.ID, proto string) (RequestHandler, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	handler := h.handlers[proto]
	if h.closed || handler == nil || h.requests[pid] >= h.cfg.MaxStreamsPerPeer {
		return nil, false
	}
	h.requests[pid]++
	h.wg.Add(1)
	return handler, true
}

func (h *Host) leaveRequest(pid peer.ID) {
	h.mu.Lock()
	if h.requests[pid]--; h.requests[pid] <= 0 {
		delete(h.requests, pid)
	}
	h.mu.Unlock()
	h.wg.Done()
}

// A request or a response is one message:
//
//	length (uint32, big-endian) || body (length bytes)
//
// with length at most MaxRequestSize. The requester writes one message and
// closes its write side; the handler writes one message and closes.

// readMessage reads one message. It returns an error wrapping ErrRequestSize
// for a length over MaxRequestSize (without reading the body), and
// io.ErrUnexpectedEOF for a stream that ends before the message does.
func readMessage(r io.Reader) ([]byte, error) {
	var hdr [requestHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxRequestSize {
		return nil, fmt.Errorf("%w: message of %d bytes", ErrRequestSize, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// writeMessage writes one message in a single Write.
func writeMessage(w io.Writer, body []byte) error {
	if len(body) > MaxRequestSize {
		return fmt.Errorf("%w: message of %d bytes", ErrRequestSize, len(body))
	}
	buf := make([]byte, requestHeaderSize+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[requestHeaderSize:], body)
	_, err := w.Write(buf)
	return err
}
