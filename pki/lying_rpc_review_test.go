package pki

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Adversarial review of the verifier (issue 16, P7 against A5/A8): a
// lying endpoint listed before an honest one, an endpoint that claims a
// height its chain never reaches, an old answer set served to a verifier
// started from an old root, an endpoint of another chain listed first.

// reviewLiar is a reverse proxy in front of a validator's RPC that records
// the last proving answer to every abci_query path, can replay recorded
// answers for chosen paths, and can add to the height of every abci_query
// answer it forwards.
type reviewLiar struct {
	t   *testing.T
	URL string

	mu       sync.Mutex
	recorded map[string][]byte // path -> JSON-RPC response
	frozen   bool
	replay   map[string]bool
	bump     int64
	replayed int
}

func newReviewLiar(t *testing.T, target string) *reviewLiar {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &reviewLiar{t: t, URL: "http://" + l.Addr().String(), recorded: map[string][]byte{}, replay: map[string]bool{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) },
		ModifyResponse: func(res *http.Response) error {
			req, _ := res.Request.Context().Value(ctxKey{}).(rpcRequest)
			if req.Method != "abci_query" {
				return nil
			}
			body, err := io.ReadAll(res.Body)
			if err != nil {
				return err
			}
			p.mu.Lock()
			if !p.frozen && bytes.Contains(body, []byte(`"proofOps":{`)) {
				p.recorded[req.Params.Path] = body
			}
			bump := p.bump
			p.mu.Unlock()
			if bump != 0 {
				body = bumpHeight(t, body, bump)
			}
			res.Body = io.NopCloser(bytes.NewReader(body))
			res.ContentLength = int64(len(body))
			res.Header.Set("Content-Length", strconv.Itoa(len(body)))
			return nil
		},
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req rpcRequest
		_ = json.Unmarshal(body, &req)
		p.mu.Lock()
		old := p.recorded[req.Params.Path]
		replay := req.Method == "abci_query" && p.replay[req.Params.Path] && old != nil
		if replay {
			p.replayed++
		}
		p.mu.Unlock()
		if replay {
			writeReplayed(w, old, req)
			return
		}
		forward(rp, w, r, body, req)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// bumpHeight adds d to result.response.height of a JSON-RPC abci_query
// answer.
func bumpHeight(t *testing.T, body []byte, d int64) []byte {
	var res struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  struct {
			Response map[string]json.RawMessage `json:"response"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.Result.Response == nil {
		return body
	}
	var hs string
	if err := json.Unmarshal(res.Result.Response["height"], &hs); err != nil {
		return body
	}
	h, _ := strconv.ParseInt(hs, 10, 64)
	res.Result.Response["height"], _ = json.Marshal(strconv.FormatInt(h+d, 10))
	out, err := json.Marshal(res)
	if err != nil {
		t.Errorf("bump: %v", err)
		return body
	}
	return out
}

func (p *reviewLiar) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

func (p *reviewLiar) setReplay(paths ...string) {
	p.mu.Lock()
	p.replay = map[string]bool{}
	for _, s := range paths {
		p.replay[s] = true
	}
	p.mu.Unlock()
}

func (p *reviewLiar) setBump(d int64) {
	p.mu.Lock()
	p.bump = d
	p.mu.Unlock()
}

func (p *reviewLiar) replays() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replayed
}

// waitEpochs waits until n's chain is at least k epochs past epoch e.
func waitEpochs(t *testing.T, n *ValidatorNode, e uint64, k uint64) {
	t.Helper()
	eb := int64(integrationParams().EpochBlocks)
	deadline := time.Now().Add(time.Minute)
	for n.App().lastHeight() < int64(e+k+1)*eb {
		if time.Now().After(deadline) {
			t.Fatalf("chain at height %d, want epoch %d", n.App().lastHeight(), e+k)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// R1. The first endpoint replays an old, validly committed /epoch answer;
// the second endpoint is an honest validator. The verifier must answer
// from the honest endpoint (a node "uses any verified endpoint it has"),
// not refuse every query while the liar stays first, which freezes the
// node on its last topology for as long as the liar keeps lying. The liar
// is warned about once, not at every retry.
func TestReviewStaleLiarListedFirstDoesNotFreezeTheNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, _ := startChainHome(t, "strata-honest", "")
	waitHeight(t, n, 3, 10*time.Second)
	liar := newReviewLiar(t, n.RPC())
	logs := &countingHandler{}
	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{liar.URL, n.RPC()}, TrustHeight: 1, TrustHash: rootAt(ctx, t, n.RPC(), 1),
		Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	old := mustEpoch(ctx, t, v)
	liar.freeze()
	waitEpochs(t, n, old.Epoch, 2)
	fresh := mustEpoch(ctx, t, v) // raises the floor above the recorded answer
	if fresh.Epoch <= old.Epoch {
		t.Fatalf("epoch %d after waiting, recorded %d", fresh.Epoch, old.Epoch)
	}
	liar.setReplay(QueryEpoch)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		ei, err := v.Epoch(ctx)
		if err != nil {
			t.Fatalf("with an honest second endpoint, the liar's stale answer stopped the query: %v", err)
		}
		if ei.Epoch < fresh.Epoch {
			t.Fatalf("epoch went back from %d to %d", fresh.Epoch, ei.Epoch)
		}
	}
	if liar.replays() == 0 {
		t.Fatal("the liar was never asked")
	}
	if st := v.Status(); st.Endpoint != n.RPC() {
		t.Fatalf("status %+v: want the honest endpoint in use while the liar lies", st)
	}
	if w := logs.count(slog.LevelWarn, "pki: RPC endpoint"); len(w) > 1 {
		t.Fatalf("%d warnings about the liar in 5 s, want at most 1", len(w))
	}
}

// R2. The first endpoint forwards honest answers but claims each was read
// at a height 10^6 blocks ahead. The verifier waits for header H+1 by
// asking that same endpoint's status, with no bound but the caller's
// context: the node's refresh loop (whose context never ends) would hang
// for ever. It must give up on the liar within a bound and use the honest
// endpoint; alone, the liar's answers must fail within a bound.
func TestReviewLiarClaimingAFutureHeightDoesNotHang(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, _ := startChainHome(t, "strata-honest", "")
	waitHeight(t, n, 3, 10*time.Second)
	liar := newReviewLiar(t, n.RPC())
	root := rootAt(ctx, t, n.RPC(), 1)
	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{liar.URL, n.RPC()}, TrustHeight: 1, TrustHash: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	mustEpoch(ctx, t, v)
	liar.setBump(1_000_000)
	start := time.Now()
	qctx, qcancel := context.WithTimeout(ctx, 40*time.Second)
	_, err = v.Epoch(qctx)
	qcancel()
	if err != nil {
		t.Fatalf("liar first, honest second: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Fatalf("the answer took %v", d)
	}
	t.Logf("answered by the honest endpoint after %v", time.Since(start).Round(time.Millisecond))

	alone, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{liar.URL}, TrustHeight: 1, TrustHash: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	start = time.Now()
	qctx, qcancel = context.WithTimeout(ctx, 40*time.Second)
	_, err = alone.Epoch(qctx)
	hit := qctx.Err() != nil
	qcancel()
	if err == nil || hit || !errors.Is(err, ErrUnverified) {
		t.Fatalf("the liar alone: %v after %v, want a refusal within the bound, not the caller's deadline", err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("the liar alone refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// R3. A verifier started from an old root (block 1, as the testnet and a
// published root give it) is served an old, validly committed epoch answer
// and the old epoch's topology, recorded epochs ago. The age rule is not
// applied until a topology has been verified, so the first refresh put a
// topology of an epoch long past into the cache (and every later refresh,
// refused as stale, kept it there as "the last good topology").
func TestReviewOldAnswerSetToAFreshVerifierIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, _ := startChainHome(t, "strata-honest", "")
	waitHeight(t, n, 3, 10*time.Second)
	liar := newReviewLiar(t, n.RPC())
	root := rootAt(ctx, t, n.RPC(), 1)
	// Someone's verifier reads through the liar, which records.
	rec, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{liar.URL}, TrustHeight: 1, TrustHash: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	old := mustEpoch(ctx, t, rec)
	if _, err := rec.Topology(ctx, old.Epoch); err != nil {
		t.Fatal(err)
	}
	liar.freeze()
	waitEpochs(t, n, old.Epoch, 4)
	// Past the age bound the new verifier will compute: two epochs of the
	// mean block interval from the root to the recorded answers' header.
	st := rec.Status()
	c, err := DialChain(ctx, n.RPC())
	if err != nil {
		t.Fatal(err)
	}
	one := int64(1)
	b1, err := c.set.eps[0].rpc.Block(ctx, &one)
	if err != nil {
		t.Fatal(err)
	}
	iv := st.VerifiedTime.Sub(b1.Block.Time) / time.Duration(st.VerifiedHeight-1)
	bound := 2 * time.Duration(integrationParams().EpochBlocks) * iv
	t.Logf("recorded at header %d; mean interval from block 1 %v, age bound %v", st.VerifiedHeight, iv, bound)
	for time.Since(st.VerifiedTime) < bound+2*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	liar.setReplay(QueryEpoch, QueryTopology+"/"+strconv.FormatUint(old.Epoch, 10))

	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{liar.URL}, TrustHeight: 1, TrustHash: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cache := NewTopologyCache(v)
	err = cache.Refresh(ctx)
	if cur := cache.Current(); cur != nil {
		t.Fatalf("a fresh verifier took the topology of epoch %d, recorded %d epochs ago (chain at epoch %d); refresh: %v",
			cur.Epoch, 4, uint64(n.App().lastHeight())/integrationParams().EpochBlocks, err)
	}
	if !errors.Is(err, ErrStaleAnswer) {
		t.Fatalf("old answer set: %v, want ErrStaleAnswer", err)
	}
	// Honest answers still verify.
	liar.setReplay()
	for try := 0; ; try++ {
		err := cache.Refresh(ctx) // may miss a document pruned at an epoch boundary
		if err == nil && cache.Current() != nil && cache.Current().Epoch > old.Epoch {
			break
		}
		if try == 20 {
			t.Fatalf("honest refresh: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// R4. An endpoint of another chain is listed before the honest one, and
// the store is empty: the chain id was learned from the first endpoint
// (the wrong one), every honest endpoint was marked down as "another
// chain" and the verifier refused to start. The configured root names
// the chain: the verifier must start on the endpoint that serves it.
func TestReviewWrongChainListedFirstAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts validators")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	honest, other := startTwoChains(t)
	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{other.RPC(), honest.RPC()}, TrustHeight: 1,
		TrustHash: rootAt(ctx, t, honest.RPC(), 1), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("an endpoint of another chain listed first stopped the start: %v", err)
	}
	defer v.Close()
	mustEpoch(ctx, t, v)
	st := v.Status()
	if st.ChainID != "strata-honest" || st.Endpoint != honest.RPC() || !strings.Contains(st.Down[other.RPC()], "another chain") {
		t.Fatalf("status %+v: want the honest chain, its endpoint in use and the other down", st)
	}
}
