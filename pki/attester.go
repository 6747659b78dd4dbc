package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"sync"
	"time"
)

// DefaultProbeParallel is how many probes a validator runs at once by
// default. A probe in flight is a goroutine and a socket, so this can be
// generous; it bounds how long admitted nodes that hold a slot for the
// whole ProbeTimeout (black holes) delay the rest: N of them hold an
// epoch's first round for N × ProbeTimeout / DefaultProbeParallel.
const DefaultProbeParallel = 64

// AttesterConfig tunes a validator's prober. The zero value works.
type AttesterConfig struct {
	// Interval is how often the attester looks for nodes to probe, and
	// the longest one pass waits for a free prober before it lists the
	// nodes again. Default 1s.
	Interval time.Duration
	// ProbeTimeout bounds one probe. Default 5s.
	ProbeTimeout time.Duration
	// RetryAfter is the least time between two probes of a node.
	// Default 5 × Interval.
	RetryAfter time.Duration
	// Parallel is how many probes run at once. Default
	// DefaultProbeParallel.
	Parallel int
	// ProbeBudget is how many times this validator probes a pending node
	// in total. Default 3. (Admitted nodes are probed until seen, with
	// growing spacing: docs/pki.md, "Validation".)
	ProbeBudget int
	// Stats, when set, counts the probes.
	Stats *ProbeCounters
}

// attester is a validator's side of validation: it probes the registered
// nodes that this validator has not attested in the current epoch and
// whose liveness no quorum has confirmed this epoch, within the budget
// and in the order of a schedule, and broadcasts an attestation, signed
// with the consensus key, for each node that answers. Nodes no quorum
// sees for Params.DropAfter epochs are dropped by the chain, so a node
// that stops answering leaves the topology.
type attester struct {
	n     *ValidatorNode
	cfg   AttesterConfig
	me    [32]byte
	mu    sync.Mutex
	sched *schedule
}

func newAttester(n *ValidatorNode, cfg AttesterConfig) *attester {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 5 * time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * cfg.Interval
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = DefaultProbeParallel
	}
	if cfg.ProbeBudget <= 0 {
		cfg.ProbeBudget = 3
	}
	// The order's key; crypto/rand.Read does not fail (Go 1.24+).
	var secret [32]byte
	_, _ = rand.Read(secret[:])
	return &attester{
		n: n, cfg: cfg, me: [32]byte(n.key.Public().(ed25519.PublicKey)),
		sched: newSchedule(cfg.ProbeBudget, cfg.RetryAfter, secret),
	}
}

// run makes a pass every Interval: it lists the nodes due, admitted ones
// first, and starts their probes as probers free up, giving up the rest
// of the list after Interval so that the next pass, which lists again,
// never waits behind a stale one.
func (at *attester) run(ctx context.Context) {
	log := at.n.log.With("part", "attester")
	var p *Prober
	defer func() {
		if p != nil {
			p.Close()
		}
	}()
	sem := make(chan struct{}, at.cfg.Parallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(at.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		epoch, public, items, ok := at.n.app.attestWork(at.me)
		if !ok {
			continue
		}
		if p == nil {
			var opts []ProberOption
			if public {
				opts = append(opts, ProbePublicOnly())
			}
			var err error
			if p, err = NewProber(at.n.ChainID(), opts...); err != nil {
				log.Error("no prober: this validator will not attest", "err", err)
				return
			}
		}
		at.mu.Lock()
		due := at.sched.due(time.Now(), epoch, items)
		at.mu.Unlock()
		if !at.pass(ctx, p, sem, &wg, epoch, due) {
			return
		}
	}
}

// pass starts the probes of due in order until the list or Interval runs
// out; it returns false when ctx ends.
func (at *attester) pass(ctx context.Context, p *Prober, sem chan struct{}, wg *sync.WaitGroup, epoch uint64, due []*Registration) bool {
	if len(due) == 0 {
		return true
	}
	deadline := time.NewTimer(at.cfg.Interval)
	defer deadline.Stop()
	for _, node := range due {
		select {
		case sem <- struct{}{}:
		case <-deadline.C:
			return true
		case <-ctx.Done():
			return false
		}
		at.mu.Lock()
		ok := at.sched.start(node, epoch, time.Now())
		at.mu.Unlock()
		if !ok {
			<-sem
			continue
		}
		admitted := node.Status == StatusAdmitted
		at.cfg.Stats.started(admitted)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			attested := at.probe(ctx, p, epoch, node)
			if !attested {
				at.cfg.Stats.failed(admitted)
			}
			at.mu.Lock()
			at.sched.finish(node, epoch, attested)
			at.mu.Unlock()
		}()
	}
	return true
}

// probe probes node and, if it answers, attests it; it reports whether
// the attestation was accepted.
func (at *attester) probe(ctx context.Context, p *Prober, epoch uint64, node *Registration) bool {
	log := at.n.log.With("part", "attester", "node", node.ID, "epoch", epoch)
	pctx, cancel := context.WithTimeout(ctx, at.cfg.ProbeTimeout)
	defer cancel()
	if err := p.Probe(pctx, node.Key, node.Addrs); err != nil {
		log.Info("probe failed", "status", node.Status, "err", err)
		return false
	}
	tx, err := SignTx(at.n.ChainID(), epoch, at.n.key, &Attestation{Subject: node.ID})
	if err != nil {
		log.Error("sign attestation", "err", err)
		return false
	}
	if err := asTxError(at.n.BroadcastTx(ctx, tx)); err != nil && CodeOf(err) != CodeReplayed {
		log.Info("attestation refused", "err", err)
		return false
	}
	log.Debug("attested")
	return true
}

// attestWork returns the current epoch, whether the chain accepts public
// addresses only, and every registered node, marking the ones validator
// me has not attested in the epoch, leaving out admitted nodes a quorum
// already saw. ok is false before the first epoch.
func (a *App) attestWork(me [32]byte) (epoch uint64, public bool, items []attestItem, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := state{kv: newKV(a.base)}
	ei, err := st.epoch()
	if err != nil || !ei.Open {
		return 0, false, nil, false
	}
	p, err := st.params()
	if err != nil {
		a.log.Error("attest work", "err", err)
		return 0, false, nil, false
	}
	nodes, err := st.nodes()
	if err != nil {
		a.log.Error("attest work", "err", err)
		return 0, false, nil, false
	}
	for _, n := range nodes {
		need := !(n.Status == StatusAdmitted && n.LastSeen == ei.Epoch)
		if need {
			for _, v := range st.attesters(ei.Epoch, n.ID) {
				need = need && v != me
			}
		}
		items = append(items, attestItem{node: n, need: need})
	}
	return ei.Epoch, p.PublicAddrsOnly, items, true
}
