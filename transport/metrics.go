package transport

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a peer is disconnected, the label values of
// strata_transport_peer_disconnects_total.
const (
	reasonFrameSize   = "frame_size"
	reasonTooManyStrs = "too_many_streams"
	reasonBanned      = "banned"
	// reasonClassical: the link's key exchange is not post-quantum and
	// the host does not allow classical links.
	reasonClassical = "classical"
)

// Results of requests, the label values of strata_transport_requests_sent_total
// and strata_transport_requests_received_total.
const (
	resultOK      = "ok"
	resultRefused = "refused" // handler error, reset, early end, unknown protocol
	resultSize    = "too_large"
	resultTimeout = "timeout"
	resultDial    = "dial_error"
	resultBusy    = "busy" // no handler, or the peer's concurrent requests at the limit
	resultBanned  = "banned"
)

// Reasons queued packets are dropped, the label values of
// strata_transport_send_dropped_total: the peer left the pool or the host
// closed; opening a stream to the peer failed.
const (
	dropPeerRemoved = "peer_removed"
	dropUnreachable = "unreachable"
)

// metrics are a host's Prometheus collectors. Counters on the per-packet
// path are added to in batches, so they lag the traffic by at most one batch.
type metrics struct {
	framesIn, framesOut prometheus.Counter
	entryIn, entryOut   prometheus.Counter
	bytesIn, bytesOut   prometheus.Counter
	badFrames           *prometheus.CounterVec
	disconnects         *prometheus.CounterVec
	queueFull           prometheus.Counter
	unreachable         prometheus.Counter
	dropped             *prometheus.CounterVec
	dials               *prometheus.CounterVec
	redials             prometheus.Counter
	writeTimeouts       prometheus.Counter
	streamErrors        prometheus.Counter
	handshakes          *prometheus.CounterVec
	requestsOut         *prometheus.CounterVec
	requestsIn          *prometheus.CounterVec
	inboundStreams      prometheus.Gauge
	peers               prometheus.Gauge

	reg prometheus.Registerer // nil if not registered
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "strata", "transport"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		framesIn:       counter("frames_received_total", "Mix frames received and handed to the handler."),
		framesOut:      counter("frames_sent_total", "Mix frames written to a stream and flushed."),
		entryIn:        counter("entry_frames_received_total", "Entry frames received and handed to the EntryHandler (also in frames_received_total)."),
		entryOut:       counter("entry_frames_sent_total", "Entry frames written and flushed (also in frames_sent_total)."),
		bytesIn:        counter("received_bytes_total", "Mix frame bytes received, headers included."),
		bytesOut:       counter("sent_bytes_total", "Mix frame bytes written, headers included."),
		badFrames:      counterVec("bad_frames_total", "Frames rejected, by reason.", "reason"),
		disconnects:    counterVec("peer_disconnects_total", "Peers disconnected for bad behaviour, by reason.", "reason"),
		queueFull:      counter("send_queue_full_total", "Packets refused because the peer's send queue was full."),
		unreachable:    counter("send_unreachable_total", "Packets refused because the peer was unreachable (its last stream open failed)."),
		dropped:        counterVec("send_dropped_total", "Queued packets dropped before reaching the wire, by reason.", "reason"),
		dials:          counterVec("dials_total", "Dials made by the pool to reach a peer, by result.", "result"),
		redials:        counter("redials_total", "Dials or stream opens retried after a failure."),
		writeTimeouts:  counter("write_timeouts_total", "Streams reset because a peer did not read within WriteTimeout."),
		streamErrors:   counter("stream_errors_total", "Outbound streams that broke (frames in their last batch are lost) and were reopened."),
		handshakes:     counterVec("handshakes_total", "Connections established, by transport, security and key exchange.", "transport", "security", "key_exchange"),
		requestsOut:    counterVec("requests_sent_total", "Requests made with Host.Request, by result.", "result"),
		requestsIn:     counterVec("requests_received_total", "Requests received for a Handle'd protocol, by result.", "result"),
		inboundStreams: gauge("inbound_streams", "Open inbound mix streams."),
		peers:          gauge("peers", "Peers in the send pool."),
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, r := range m.collectors()[:i] {
				reg.Unregister(r)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("transport: metrics already registered (wrap the registerer per host): %w", err)
			}
			return nil, fmt.Errorf("transport: register metrics: %w", err)
		}
	}
	m.reg = reg
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.framesIn, m.framesOut, m.entryIn, m.entryOut, m.bytesIn, m.bytesOut, m.badFrames, m.disconnects, m.queueFull,
		m.unreachable, m.dropped, m.dials, m.redials, m.writeTimeouts, m.streamErrors, m.handshakes, m.requestsOut, m.requestsIn, m.inboundStreams, m.peers,
	}
}

// unregister frees the registry for a host started after this one closes.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}
