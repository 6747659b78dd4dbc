package pki

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cfg "github.com/cometbft/cometbft/config"
)

// lyingRPC is a reverse proxy in front of a validator's RPC endpoint that
// can switch its target, record the last answer to an /epoch query and
// replay it in place of fresh ones, and stop and start listening on its
// address.
type lyingRPC struct {
	t    *testing.T
	addr string
	URL  string

	mu       sync.Mutex
	target   *url.URL
	srv      *http.Server
	recorded []byte // last /epoch answer (a JSON-RPC response)
	frozen   bool   // recorded is kept
	replay   bool
}

type rpcRequest struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		Path string `json:"path"`
	} `json:"params"`
}

type ctxKey struct{}

func newLyingRPC(t *testing.T, target string) *lyingRPC {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lyingRPC{t: t, addr: l.Addr().String(), URL: "http://" + l.Addr().String()}
	p.setTarget(target)
	p.serve(l)
	t.Cleanup(p.stop)
	return p
}

func (p *lyingRPC) setTarget(target string) {
	u, err := url.Parse(target)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.target = u
	p.mu.Unlock()
}

// setReplay answers /epoch queries with the recorded answer (on) or
// forwards them (off).
func (p *lyingRPC) setReplay(on bool) {
	p.mu.Lock()
	p.replay = on
	p.mu.Unlock()
}

// freeze keeps the answer recorded last.
func (p *lyingRPC) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

func (p *lyingRPC) serve(l net.Listener) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			p.mu.Lock()
			r.SetURL(p.target)
			p.mu.Unlock()
		},
		ModifyResponse: func(res *http.Response) error {
			req, _ := res.Request.Context().Value(ctxKey{}).(rpcRequest)
			if req.Method != "abci_query" || req.Params.Path != QueryEpoch {
				return nil
			}
			body, err := io.ReadAll(res.Body)
			if err != nil {
				return err
			}
			res.Body = io.NopCloser(bytes.NewReader(body))
			p.mu.Lock()
			if !p.frozen {
				p.recorded = body
			}
			p.mu.Unlock()
			return nil
		},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req rpcRequest
		_ = json.Unmarshal(body, &req)
		p.mu.Lock()
		old := p.recorded
		replay := p.replay && old != nil && req.Method == "abci_query" && req.Params.Path == QueryEpoch
		p.mu.Unlock()
		if replay {
			writeReplayed(w, old, req)
			return
		}
		forward(rp, w, r, body, req)
	})
	srv := &http.Server{Handler: handler}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// stop closes the listener: connections to the proxy are refused.
func (p *lyingRPC) stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// start listens again on the same address.
func (p *lyingRPC) start() {
	p.t.Helper()
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(l)
}

// countingHandler keeps every log record, for tests that count warnings.
type countingHandler struct {
	mu      sync.Mutex
	records []slog.Record
	attrs   []slog.Attr
	parent  *countingHandler
}

func (h *countingHandler) root() *countingHandler {
	if h.parent != nil {
		return h.parent.root()
	}
	return h
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	root := h.root()
	root.mu.Lock()
	root.records = append(root.records, r)
	root.mu.Unlock()
	if os.Getenv("STRATA_TEST_LOG") != "" {
		_ = slog.NewTextHandler(os.Stderr, nil).Handle(context.Background(), r)
	}
	return nil
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{parent: h, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *countingHandler) WithGroup(string) slog.Handler { return h }

// count returns the records at level whose message contains msg.
func (h *countingHandler) count(level slog.Level, msg string) []slog.Record {
	root := h.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	var out []slog.Record
	for _, r := range root.records {
		if r.Level == level && strings.Contains(r.Message, msg) {
			out = append(out, r)
		}
	}
	return out
}

func attrOf(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// startChainHome initialises a one-validator home for chainID (with the
// genesis and validator key of home from when from is not "") and starts
// it.
func startChainHome(t *testing.T, chainID, from string) (*ValidatorNode, string) {
	t.Helper()
	home := t.TempDir()
	keys, err := InitHome(home)
	if err != nil {
		t.Fatal(err)
	}
	if from == "" {
		g := Genesis{ChainID: chainID, Time: time.Now(), Params: integrationParams(),
			Validators: []GenesisValidator{{PubKey: keys.ValidatorKey, Power: 10, Name: "v0"}}}
		if err := WriteGenesis(home, g); err != nil {
			t.Fatal(err)
		}
	} else {
		for _, f := range []string{"genesis.json", "priv_validator_key.json"} {
			b, err := os.ReadFile(filepath.Join(from, cfg.DefaultConfigDir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, cfg.DefaultConfigDir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return startHome(t, home), home
}

// latestRoot returns a recent committed header of the validator behind
// rpc as a trust root.
func latestRoot(ctx context.Context, t *testing.T, rpc string) (int64, []byte) {
	t.Helper()
	c, err := DialChain(ctx, rpc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.set.eps[0].rpc.Block(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.Block.Height, b.BlockID.Hash
}

// rootAt returns the header at height h of the validator behind rpc.
func rootAt(ctx context.Context, t *testing.T, rpc string, h int64) []byte {
	t.Helper()
	c, err := DialChain(ctx, rpc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.set.eps[0].rpc.Block(ctx, &h)
	if err != nil {
		t.Fatal(err)
	}
	return b.BlockID.Hash
}

// writeReplayed answers req with a recorded JSON-RPC answer, under the id
// of req.
func writeReplayed(w http.ResponseWriter, old []byte, req rpcRequest) {
	var res map[string]json.RawMessage
	if err := json.Unmarshal(old, &res); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	res["id"] = req.ID
	out, _ := json.Marshal(res)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// forward passes a request whose body was read already to the reverse
// proxy, with the decoded request in its context.
func forward(rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request, body []byte, req rpcRequest) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, req)))
}

// startEquivocatingChains starts two validators from one genesis and one
// consensus key, so the validator signs two branches: fork first (it runs
// ahead, at height 10 when honest starts), then honest, at height 3 on
// return.
func startEquivocatingChains(t *testing.T) (fork, honest *ValidatorNode) {
	t.Helper()
	forkHome := t.TempDir()
	keys, err := InitHome(forkHome)
	if err != nil {
		t.Fatal(err)
	}
	g := Genesis{ChainID: "strata-fork", Time: time.Now(), Params: integrationParams(),
		Validators: []GenesisValidator{{PubKey: keys.ValidatorKey, Power: 10, Name: "v0"}}}
	if err := WriteGenesis(forkHome, g); err != nil {
		t.Fatal(err)
	}
	fork = startHome(t, forkHome)
	waitHeight(t, fork, 10, 10*time.Second)
	honest, _ = startChainHome(t, "strata-fork", forkHome)
	waitHeight(t, honest, 3, 10*time.Second)
	return fork, honest
}

// startTwoChains starts the validators of two chains ("strata-honest" and
// "strata-other"), each past height 3.
func startTwoChains(t *testing.T) (honest, other *ValidatorNode) {
	t.Helper()
	honest, _ = startChainHome(t, "strata-honest", "")
	other, _ = startChainHome(t, "strata-other", "")
	waitHeight(t, honest, 3, 10*time.Second)
	waitHeight(t, other, 3, 10*time.Second)
	return honest, other
}
