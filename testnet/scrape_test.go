package testnet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestScrapeSumsTheRelayCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	in := prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_packets_in_total"})
	out := prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_packets_out_total"})
	drop := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_relay_packets_dropped_total"}, []string{"reason"})
	reg.MustRegister(in, out, drop)
	in.Add(42)
	out.Add(40)
	drop.WithLabelValues("replay").Add(2)
	drop.WithLabelValues("mac").Add(7)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	s, err := scrape(context.Background(), http.DefaultClient, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if s != (Sample{PacketsIn: 42, PacketsOut: 40, ReplayDrops: 2}) {
		t.Errorf("scraped %+v", s)
	}
}

func TestScrapeRefusesGarbage(t *testing.T) {
	for _, body := range []string{"not metrics {{{", "# TYPE x counter\nx{a=\"1\" 3\n"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }))
		if _, err := scrape(context.Background(), http.DefaultClient, srv.URL); err == nil {
			t.Errorf("scrape accepted %q", body)
		}
		srv.Close()
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if _, err := scrape(context.Background(), http.DefaultClient, srv.URL); err == nil {
		t.Error("scrape accepted a 404")
	}
}
