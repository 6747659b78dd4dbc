package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// scrape returns the value of a counter on a Prometheus endpoint.
func scrape(url, name string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` ([0-9.e+]+)$`).FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("%s not in metrics", name)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// staticRelay is one relay run by runStaticRelays.
type staticRelay struct {
	cfg     *RelayConfig
	addr    string // its TCP multiaddr
	metrics string // its metrics URL
}

// runStaticRelays runs n relays the way `strata relay` does — keys from
// `strata keygen`, a topology file with one relay a stratum (5 ms mean
// delay, loops at loopRate), a config each with a metrics endpoint — until
// the test ends, and fails the test if one of them returns an error.
func runStaticRelays(t *testing.T, n int, loopRate float64) []staticRelay {
	t.Helper()
	dir := t.TempDir()
	topo := StaticTopology{Epoch: 1, DelayMean: "5ms", LoopRate: loopRate, Successors: 8}
	relays := make([]staticRelay, n)
	for i := range relays {
		rd := filepath.Join(dir, fmt.Sprintf("relay%d", i))
		addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))
		entry, err := Keygen(rd+".key", rd, 1, 2, []string{addr})
		if err != nil {
			t.Fatal(err)
		}
		topo.Nodes = append(topo.Nodes, *entry)
		topo.Layers = append(topo.Layers, []string{entry.ID})
		m := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		relays[i] = staticRelay{addr: addr, metrics: "http://" + m + "/metrics", cfg: &RelayConfig{
			Identity: rd + ".key", DataDir: rd, Listen: []string{addr}, Metrics: m,
			Topology: filepath.Join(dir, "topology.json"), EpochLength: "1m", MaxRate: 1000}}
	}
	b, _ := json.MarshalIndent(topo, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "topology.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, n)
	for _, r := range relays {
		if err := r.cfg.check(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- RunRelay(ctx, r.cfg, nil) }()
	}
	t.Cleanup(func() {
		cancel()
		for range relays {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	})
	return relays
}

// TestRelaysFromConfigFiles runs three relays the way `strata relay` does
// and checks that their loop cover traffic goes round the three strata and
// comes back, as their metrics endpoints report.
func TestRelaysFromConfigFiles(t *testing.T) {
	relays := runStaticRelays(t, 3, 20)
	deadline := time.Now().Add(20 * time.Second)
	for i, r := range relays {
		for {
			n, err := scrape(r.metrics, "strata_relay_loops_returned_total")
			if err == nil && n >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("relay %d: loops returned %v (%v)", i, n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func TestConfigAndTopologyRejectBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	for name, body := range map[string]string{
		"unknown key":      "identity = 'a'\ndata_dir = 'b'\ntopology = 'c'\nbogus = 1\n",
		"missing identity": "data_dir = 'b'\ntopology = 'c'\n",
		"bad epoch length": "identity = 'a'\ndata_dir = 'b'\ntopology = 'c'\nepoch_length = 'soon'\n",
		"not toml":         "{{{",
		"loss of one":      "identity = 'a'\ndata_dir = 'b'\ntopology = 'c'\ninject_loss = 1.0\n",
		"negative loss":    "identity = 'a'\ndata_dir = 'b'\ntopology = 'c'\ninject_loss = -0.1\n",
		"nan loss":         "identity = 'a'\ndata_dir = 'b'\ntopology = 'c'\ninject_loss = nan\n",
	} {
		if _, err := LoadRelayConfig(write("c.toml", body)); err == nil {
			t.Errorf("config %s accepted", name)
		}
	}
	for name, body := range map[string]string{
		"not json":         "[",
		"bad delay":        `{"epoch":1,"delay_mean":"fast","layers":[]}`,
		"no layers":        `{"epoch":1,"delay_mean":"1ms","layers":[]}`,
		"bad key":          `{"epoch":1,"delay_mean":"1ms","nodes":[{"identity_key":"zz"}]}`,
		"unknown relay":    `{"epoch":1,"delay_mean":"1ms","layers":[["` + strings.Repeat("ab", 32) + `"]]}`,
		"negative rate":    `{"epoch":1,"delay_mean":"1ms","loop_rate":-1}`,
		"short beacon":     `{"epoch":1,"delay_mean":"1ms","beacon":"abcd"}`,
		"wrong id for key": `{"epoch":1,"delay_mean":"1ms","nodes":[{"id":"` + strings.Repeat("00", 32) + `","identity_key":"` + strings.Repeat("11", 32) + `"}]}`,
	} {
		if _, err := LoadStaticTopology(write("t.json", body)); err == nil {
			t.Errorf("topology %s accepted", name)
		}
	}
}
