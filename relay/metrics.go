package relay

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons, the values of the "reason" label of
// strata_relay_packets_dropped_total.
const (
	reasonSize          = "size"
	reasonMAC           = "mac"
	reasonGroup         = "group_element"
	reasonCommand       = "command"
	reasonPayload       = "payload_tag"
	reasonReplay        = "replay"
	reasonReplayDB      = "replay_db_error"
	reasonSchedulerFull = "scheduler_full"
	reasonSend          = "send"
	reasonPeerFull      = "peer_full"
	reasonPeerDown      = "peer_down"
	reasonRoute         = "route"
	reasonRouteFrom     = "route_from"
	reasonNoClient      = "no_client"
	reasonNoLoop        = "no_loop_handler"
	reasonNotMailbox    = "not_mailbox"
	reasonNotRelay      = "not_relay"
)

var allReasons = []string{reasonSize, reasonMAC, reasonGroup, reasonCommand, reasonPayload, reasonReplay,
	reasonReplayDB, reasonSchedulerFull, reasonSend, reasonPeerFull, reasonPeerDown, reasonRoute, reasonRouteFrom,
	reasonNoClient, reasonNoLoop, reasonNotMailbox, reasonNotRelay}

type metrics struct {
	in, out       prometheus.Counter
	dropped       *prometheus.CounterVec
	delivered     *prometheus.CounterVec
	unwrapSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		in:      prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_packets_in_total", Help: "Packets received."}),
		out:     prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_packets_out_total", Help: "Packets forwarded."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_relay_packets_dropped_total", Help: "Packets dropped, by reason (replay = replay hits)."}, []string{"reason"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_relay_packets_final_total",
			Help: "Packets whose path ended here, by kind (client, loop, drop)."}, []string{"kind"}),
		unwrapSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "strata_relay_unwrap_seconds", Help: "Time to unwrap one packet.",
			Buckets: prometheus.ExponentialBuckets(20e-6, 1.5, 12)}),
	}
	for _, r := range allReasons {
		m.dropped.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.in, m.out, m.dropped, m.delivered, m.unwrapSeconds} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("relay: metrics already registered (wrap the registerer per relay): %w", err)
			}
			return nil, fmt.Errorf("relay: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) drop(reason string) { m.dropped.WithLabelValues(reason).Inc() }
