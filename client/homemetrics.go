package client

import "github.com/prometheus/client_golang/prometheus"

// Reasons a home drops a packet (strata_home_dropped_total{reason}).
const (
	dropUnknownToken      = "unknown_token"
	dropMalformed         = "malformed"
	dropQueueFull         = "queue_full"
	dropEntryUnregistered = "entry_unregistered"
	dropEntryRate         = "entry_rate"
	dropEntryRoute        = "entry_route"
	dropEntryFull         = "entry_full"
)

// homeMetrics are a Home's metrics.
type homeMetrics struct {
	pushed, entries prometheus.Counter
	clients         prometheus.Gauge
	drops           *prometheus.CounterVec
	registrations   *prometheus.CounterVec
	byReason        map[string]prometheus.Counter // drops, resolved once
}

func newHomeMetrics(reg prometheus.Registerer) homeMetrics {
	m := homeMetrics{
		pushed: prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_home_pushed_total",
			Help: "Packets pushed to registered clients."}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_home_entry_forwarded_total",
			Help: "Clients' entry packets forwarded into the first stratum."}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strata_home_nodes",
			Help: "Connected clients registered with this home."}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_home_dropped_total",
			Help: "Packets dropped by the home, by reason (unknown_token, malformed, queue_full, " +
				"entry_unregistered, entry_rate, entry_route, entry_full)."}, []string{"reason"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_home_registrations_total",
			Help: "Registration requests, by result (ok, malformed, wrong_home, token_taken, gone)."}, []string{"result"}),
	}
	m.byReason = map[string]prometheus.Counter{}
	for _, r := range []string{dropUnknownToken, dropMalformed, dropQueueFull, dropEntryUnregistered, dropEntryRate, dropEntryRoute, dropEntryFull} {
		m.byReason[r] = m.drops.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.pushed, m.entries, m.clients, m.drops, m.registrations)
	}
	return m
}

func (m homeMetrics) drop(reason string) { m.byReason[reason].Inc() }
