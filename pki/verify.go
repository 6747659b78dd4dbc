package pki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/light"
	"github.com/cometbft/cometbft/light/provider"
	lighthttp "github.com/cometbft/cometbft/light/provider/http"
	lightdb "github.com/cometbft/cometbft/light/store/db"
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Endpoints are validators' RPC endpoints ("http://host:26657"), in
	// order of preference; at least one (or Primary). Queries and
	// broadcasts go to the first that answers; every other serves as a
	// witness.
	Endpoints []string
	// Witnesses are extra endpoints used only as witnesses (optional).
	Witnesses []string
	// Primary is folded into Endpoints, first.
	//
	// Deprecated: use Endpoints.
	Primary string
	// TrustHeight and TrustHash are the root of trust: a header the
	// client knows is on the chain, obtained out of band (the validator
	// prints it; see docs/pki.md). Required unless StoreDir holds a
	// trusted header within the trust period.
	TrustHeight int64
	TrustHash   []byte
	// TrustPeriod bounds how old a trusted header may be. Default 7 days.
	TrustPeriod time.Duration
	// StoreDir is where the light client keeps its trusted headers
	// across restarts. "" keeps them in memory (tests only).
	StoreDir string
	// MaxAge refuses answers whose verifying header is older than this
	// by header time. Default: two epochs (see docs/pki.md).
	MaxAge time.Duration
	// Poll is how often Topology looks for the header that commits a
	// query's height. Default 100ms.
	Poll time.Duration
	// Logger receives the verifier's and the light client's logs.
	// Default: discarded.
	Logger *slog.Logger
}

// VerifierStatus is what a Verifier is using and what it has verified.
type VerifierStatus struct {
	ChainID string
	// Endpoint is the endpoint queries go to now ("" when none answers).
	Endpoint string
	// Witnesses are the endpoints the light client cross-checks with now.
	Witnesses []string
	// Down are the endpoints and witnesses skipped now, with why.
	Down map[string]string
	// VerifiedHeight and VerifiedTime are the height and header time of
	// the highest header an answer was accepted at (or, before the
	// first answer, the latest trusted header).
	VerifiedHeight int64
	VerifiedTime   time.Time
}

// Errors of the Verifier, beside ErrUnverified.
var (
	// ErrTrustExpired: the stored and configured trusted headers are all
	// older than the trust period, so nothing can be verified from them.
	ErrTrustExpired = errors.New("pki: trusted header expired")
	// ErrStaleAnswer: the answer is verified by a header lower than one
	// an earlier answer was accepted at, or older than MaxAge.
	ErrStaleAnswer = errors.New("pki: stale answer")
	// ErrFork: a witness holds a validly signed header that conflicts
	// with the primary's (light-client attack evidence).
	ErrFork = errors.New("pki: fork detected")
	// ErrWrongChain: an endpoint serves another chain id.
	ErrWrongChain = errors.New("pki: endpoint serves another chain")
)

// Verifier reads the PKI through a CometBFT light client: every answer
// it returns is checked against a header signed by more than two thirds of
// the validators, so the RPC endpoint need not be trusted. A query at
// height H is checked against the application hash in header H+1.
type Verifier struct {
	cfg   VerifierConfig
	chain *RPCChain
	lc    *light.Client
}

// NewVerifier connects to the primary and initialises the light client
// from the root of trust.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	if cfg.TrustPeriod <= 0 {
		cfg.TrustPeriod = 7 * 24 * time.Hour
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Primary != "" {
		cfg.Endpoints = append([]string{cfg.Primary}, cfg.Endpoints...)
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("pki: verifier: no RPC endpoint")
	}
	if len(cfg.Witnesses) == 0 {
		cfg.Witnesses = []string{cfg.Endpoints[0]}
	}
	chain, err := DialChain(ctx, cfg.Endpoints[0])
	if err != nil {
		return nil, err
	}
	primary, err := lighthttp.New(chain.ChainID(), cfg.Endpoints[0])
	if err != nil {
		return nil, fmt.Errorf("pki: light provider %s: %w", cfg.Endpoints[0], err)
	}
	var witnesses []provider.Provider
	for _, w := range cfg.Witnesses {
		p, err := lighthttp.New(chain.ChainID(), w)
		if err != nil {
			return nil, fmt.Errorf("pki: light witness %s: %w", w, err)
		}
		witnesses = append(witnesses, p)
	}
	lc, err := light.NewClient(ctx, chain.ChainID(),
		light.TrustOptions{Period: cfg.TrustPeriod, Height: cfg.TrustHeight, Hash: cfg.TrustHash},
		primary, witnesses, lightdb.New(dbm.NewMemDB(), chain.ChainID()),
		light.Logger(cmtLogger{cfg.Logger.With("part", "light")}))
	if err != nil {
		return nil, fmt.Errorf("pki: light client: %w", err)
	}
	return &Verifier{cfg: cfg, chain: chain, lc: lc}, nil
}

// Status reports the endpoints in use and the last verified header.
func (v *Verifier) Status() VerifierStatus {
	return VerifierStatus{ChainID: v.chain.ChainID(), Endpoint: v.cfg.Endpoints[0], Witnesses: v.cfg.Witnesses}
}

// Close releases the trusted store.
func (v *Verifier) Close() error { return nil }

// Chain is the unverified RPC connection the verifier reads through, for
// sending transactions.
func (v *Verifier) Chain() *RPCChain { return v.chain }

// ErrUnverified is wrapped when an answer does not match the chain.
var ErrUnverified = errors.New("pki: answer not committed by the chain")

// query runs a proving query and checks its answer against header H+1.
func (v *Verifier) query(ctx context.Context, path string, slots ...int) ([]byte, int64, error) {
	value, h, proof, err := v.chain.queryProof(ctx, path, true)
	if err != nil {
		return nil, 0, err
	}
	if proof == nil {
		return nil, h, fmt.Errorf("%w: %s came without a proof", ErrUnverified, path)
	}
	// Header H+1, which carries the application hash of height H, is
	// usually a block away.
	t := time.NewTicker(v.cfg.Poll)
	defer t.Stop()
	for {
		st, err := v.chain.rpc.Status(ctx)
		if err != nil {
			return nil, h, fmt.Errorf("pki: status: %w", err)
		}
		if st.SyncInfo.LatestBlockHeight > h {
			break
		}
		select {
		case <-ctx.Done():
			return nil, h, ctx.Err()
		case <-t.C:
		}
	}
	lb, err := v.lc.VerifyLightBlockAtHeight(ctx, h+1, time.Now())
	if err != nil {
		return nil, h, fmt.Errorf("pki: light client at height %d: %w", h+1, err)
	}
	if err := verifyProof(lb.AppHash, proof, value, slots...); err != nil {
		return nil, h, fmt.Errorf("%w: %s at height %d: %w", ErrUnverified, path, h, err)
	}
	return value, h, nil
}

// Epoch returns the chain's current epoch, verified.
func (v *Verifier) Epoch(ctx context.Context) (EpochInfo, error) {
	raw, _, err := v.query(ctx, QueryEpoch, 1)
	if err != nil {
		return EpochInfo{}, err
	}
	return DecodeEpochInfo(raw)
}

// Topology returns the topology document of epoch (the current epoch's,
// or the next one's once frozen), verified against the chain.
func (v *Verifier) Topology(ctx context.Context, epoch uint64) (*Topology, error) {
	raw, h, err := v.query(ctx, QueryTopology+"/"+strconv.FormatUint(epoch, 10), 2, 3)
	if err != nil {
		return nil, err
	}
	t, err := DecodeTopology(raw)
	if err != nil {
		return nil, err
	}
	if t.Epoch != epoch || t.ChainID != v.chain.ChainID() {
		return nil, fmt.Errorf("%w: asked for epoch %d of %q, got epoch %d of %q at height %d", ErrUnverified, epoch, v.chain.ChainID(), t.Epoch, t.ChainID, h)
	}
	return t, nil
}
