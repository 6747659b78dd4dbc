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

// TestRelaysFromConfigFiles runs three relays the way `strata relay` does —
// keys from `strata keygen`, a topology file, a TOML config each — and
// checks that their loop cover traffic goes round the three strata and
// comes back, as their metrics endpoints report.
func TestRelaysFromConfigFiles(t *testing.T) {
	dir := t.TempDir()
	topo := StaticTopology{Epoch: 1, DelayMean: "5ms", LoopRate: 20, Successors: 8}
	var configs []*RelayConfig
	var metrics []string
	for i := range 3 {
		rd := filepath.Join(dir, fmt.Sprintf("relay%d", i))
		addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))
		entry, err := Keygen(rd+".key", rd, 1, 2, []string{addr})
		if err != nil {
			t.Fatal(err)
		}
		topo.Nodes = append(topo.Nodes, *entry)
		topo.Layers = append(topo.Layers, []string{entry.ID})
		m := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		metrics = append(metrics, "http://"+m+"/metrics")
		configs = append(configs, &RelayConfig{Identity: rd + ".key", DataDir: rd, Listen: []string{addr},
			Metrics: m, Topology: filepath.Join(dir, "topology.json"), EpochLength: "1m", MaxRate: 1000})
	}
	b, _ := json.MarshalIndent(topo, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "topology.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(configs))
	for _, c := range configs {
		if err := c.check(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- RunRelay(ctx, c, nil) }()
	}
	defer func() {
		cancel()
		for range configs {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for i, url := range metrics {
		for {
			n, err := scrape(url, "strata_relay_loops_returned_total")
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
