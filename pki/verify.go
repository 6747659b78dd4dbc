package pki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	lightstore "github.com/cometbft/cometbft/light/store"
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
	// ErrNoEndpoint: no configured RPC endpoint answered.
	ErrNoEndpoint = errors.New("pki: no RPC endpoint answers")
)

// Verifier reads the PKI through a CometBFT light client: every answer
// it returns is checked against a header signed by more than two thirds of
// the validators, so the RPC endpoints need not be trusted. A query at
// height H is checked against the application hash in header H+1, the
// answer's verifying header. See docs/pki.md, "Verifying what the chain
// says", for the trusted store, witnesses, freshness and failover.
type Verifier struct {
	cfg       VerifierConfig
	set       *endpointSet
	chain     *RPCChain
	db        dbm.DB
	store     lightstore.Store
	lcMu      sync.Mutex // one light client at a time over the store
	closeOnce sync.Once
	// unwitnessed holds the headers unwitnessedBy alone vouched for (see
	// verifyHeader); nil when the last verification had a witness.
	// Guarded by lcMu.
	unwitnessed   lightstore.Store
	unwitnessedBy *endpoint

	mu          sync.Mutex
	accepted    mark // highest verifying header of an accepted answer
	stored      mark // highest of those in the trusted store, or first
	first       mark // the newest trusted header at start
	epochBlocks uint64
}

// mark is a verified header's height and time.
type mark struct {
	height int64
	time   time.Time
}

// NewVerifier opens the trusted store, learns the chain id (the store's,
// else the first endpoint's to answer) and sets the trusted header.
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
	set, err := newEndpointSet(cfg.Endpoints, cfg.Witnesses, cfg.Logger)
	if err != nil {
		return nil, err
	}
	db, err := openTrustDB(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, set: set, chain: &RPCChain{set: set}, db: db}
	if err := v.open(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return v, nil
}

func (v *Verifier) open(ctx context.Context) error {
	stored, err := v.db.Get(keyStoreChainID)
	if err != nil {
		return fmt.Errorf("pki: trusted store: %w", err)
	}
	var rootHeight int64
	if len(v.cfg.TrustHash) > 0 {
		rootHeight = v.cfg.TrustHeight
	}
	if err := v.set.learnChainID(ctx, string(stored), rootHeight, v.cfg.TrustHash); err != nil {
		return err
	}
	v.store = lightStore(v.db, v.set.chainID)
	if len(v.set.eps) == 1 {
		v.cfg.Logger.Warn("pki: one RPC endpoint and no witness: forks cannot be detected with one endpoint", "endpoint", v.set.eps[0].url)
	}
	if err := v.initTrust(ctx); err != nil {
		return err
	}
	if len(stored) == 0 {
		if err := v.db.SetSync(keyStoreChainID, []byte(v.set.chainID)); err != nil {
			return fmt.Errorf("pki: trusted store: %w", err)
		}
	}
	last, err := v.store.LastLightBlockHeight()
	if err != nil {
		return fmt.Errorf("pki: trusted store: %w", err)
	}
	lb, err := v.store.LightBlock(last)
	if err != nil {
		return fmt.Errorf("pki: trusted store: %w", err)
	}
	v.first = mark{lb.Height, lb.Time}
	v.accepted, v.stored = v.first, v.first
	return nil
}

// Close releases the trusted store; later calls return nil.
func (v *Verifier) Close() error {
	var err error
	v.closeOnce.Do(func() { err = v.db.Close() })
	return err
}

// Chain is the RPC connection the verifier reads through, for sending
// transactions and unproven queries; it fails over like the verifier.
func (v *Verifier) Chain() *RPCChain { return v.chain }

// Status reports the endpoints in use and the last verified header.
func (v *Verifier) Status() VerifierStatus {
	var st VerifierStatus
	v.set.status(&st)
	v.mu.Lock()
	st.VerifiedHeight, st.VerifiedTime = v.accepted.height, v.accepted.time
	v.mu.Unlock()
	return st
}

// ErrUnverified is wrapped when an answer does not match the chain.
var ErrUnverified = errors.New("pki: answer not committed by the chain")

// Epoch returns the chain's current epoch, verified.
func (v *Verifier) Epoch(ctx context.Context) (EpochInfo, error) {
	raw, _, _, err := v.query(ctx, QueryEpoch, 1)
	if err != nil {
		return EpochInfo{}, err
	}
	return DecodeEpochInfo(raw)
}

// Topology returns the topology document of epoch (the current epoch's,
// or the next one's once frozen), verified against the chain.
func (v *Verifier) Topology(ctx context.Context, epoch uint64) (*Topology, error) {
	raw, h, vt, err := v.query(ctx, QueryTopology+"/"+strconv.FormatUint(epoch, 10), 2, 3)
	if err != nil {
		return nil, err
	}
	t, err := DecodeTopology(raw)
	if err != nil {
		return nil, err
	}
	if t.Epoch != epoch || t.ChainID != v.set.chainID {
		return nil, fmt.Errorf("%w: asked for epoch %d of %q, got epoch %d of %q at height %d", ErrUnverified, epoch, v.set.chainID, t.Epoch, t.ChainID, h)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.epochBlocks = t.Params.EpochBlocks
	// The age rule, with the epoch length this document states: the first
	// document a verifier reads is held to it too.
	if err := v.checkAge(h+1, vt); err != nil {
		return nil, fmt.Errorf("%s/%d at height %d: %w", QueryTopology, epoch, h, err)
	}
	return t, nil
}
