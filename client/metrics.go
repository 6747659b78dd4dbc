package client

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type metrics struct {
	real, cover, loops, loopsReturned, loopsLost prometheus.Counter
	replies, repliesUnknown, repliesBad          prometheus.Counter
	framesRejected, sendErrors, noRoute          prometheus.Counter
	offline, homeChanges, missed                 prometheus.Counter
	loopSeconds                                  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_client_" + name, Help: help})
	}
	m := &metrics{
		real:           c("real_packets_total", "Real packets sent on the payload stream."),
		cover:          c("cover_packets_total", "Drop cover packets sent (payload and drop streams)."),
		loops:          c("loops_sent_total", "Loop packets sent."),
		loopsReturned:  c("loops_returned_total", "Loops that came back."),
		loopsLost:      c("loops_lost_total", "Loops that did not come back in time."),
		replies:        c("replies_total", "Replies to our SURBs decrypted."),
		repliesUnknown: c("replies_unknown_total", "Replies to unknown or expired SURB ids, dropped."),
		repliesBad:     c("replies_bad_total", "Replies that failed to decrypt, dropped."),
		framesRejected: c("frames_rejected_total", "Frames not from the home relay or malformed, dropped."),
		sendErrors:     c("send_errors_total", "Packets the link to the home could not take."),
		noRoute:        c("no_route_total", "Slots that found no route in the topology."),
		offline:        c("offline_slots_total", "Slots that sent nothing because the link to the home was down."),
		homeChanges:    c("home_changes_total", "Moves to another home after the home failed or left the topology."),
		missed:         c("missed_slots_total", "Slots skipped because they came up more than 100 ms late (process stopped, machine suspended)."),
		loopSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "strata_client_loop_seconds",
			Help: "Round trip of returned loops.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
	}
	if reg != nil {
		reg.MustRegister(m.real, m.cover, m.loops, m.loopsReturned, m.loopsLost, m.replies, m.repliesUnknown,
			m.repliesBad, m.framesRejected, m.sendErrors, m.noRoute, m.offline, m.homeChanges, m.missed, m.loopSeconds)
	}
	return m
}

func value(c prometheus.Counter) uint64 {
	var m dto.Metric
	_ = c.Write(&m)
	return uint64(m.GetCounter().GetValue())
}

func (m *metrics) snapshot() Stats {
	return Stats{
		Real: value(m.real), Cover: value(m.cover), Loops: value(m.loops),
		LoopsReturned: value(m.loopsReturned), LoopsLost: value(m.loopsLost),
		Replies: value(m.replies), RepliesUnknown: value(m.repliesUnknown),
		RepliesBad: value(m.repliesBad), FramesRejected: value(m.framesRejected),
		SendErrors: value(m.sendErrors), NoRoute: value(m.noRoute),
		Offline: value(m.offline), HomeChanges: value(m.homeChanges), Missed: value(m.missed),
	}
}
