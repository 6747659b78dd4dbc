package pki

import (
	"context"
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// AttesterConfig tunes a validator's prober. The zero value works.
type AttesterConfig struct {
	// Interval is how often the attester looks for nodes to probe.
	// Default 1s.
	Interval time.Duration
	// ProbeTimeout bounds one probe. Default 5s.
	ProbeTimeout time.Duration
	// RetryAfter is how long a node that failed a probe waits for the
	// next. Default 5 × Interval.
	RetryAfter time.Duration
	// Parallel is how many probes run at once. Default 8.
	Parallel int
}

// attester is a validator's side of validation: once per epoch it probes
// every registered node that this validator has not attested yet and
// whose liveness no quorum has confirmed this epoch, and broadcasts an
// attestation, signed with the consensus key, for each node that answers.
// Nodes no quorum sees for Params.DropAfter epochs are dropped by the
// chain, so a node that stops answering leaves the topology.
type attester struct {
	n    *ValidatorNode
	cfg  AttesterConfig
	me   [32]byte
	mu   sync.Mutex
	next map[sphinx.NodeID]time.Time // earliest next probe of a node
	done map[sphinx.NodeID]uint64    // epoch of this validator's last attestation of a node
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
		cfg.Parallel = 8
	}
	return &attester{
		n: n, cfg: cfg, me: [32]byte(n.key.Public().(ed25519.PublicKey)),
		next: make(map[sphinx.NodeID]time.Time), done: make(map[sphinx.NodeID]uint64),
	}
}

func (at *attester) run(ctx context.Context) {
	log := at.n.log.With("part", "attester")
	p, err := NewProber(at.n.ChainID())
	if err != nil {
		log.Error("no prober: this validator will not attest", "err", err)
		return
	}
	defer p.Close()
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
		epoch, work := at.n.app.attestWork(at.me)
		now := time.Now()
		for _, node := range work {
			at.mu.Lock()
			skip := now.Before(at.next[node.ID]) || at.done[node.ID] == epoch+1
			if !skip {
				at.next[node.ID] = now.Add(at.cfg.RetryAfter)
			}
			at.mu.Unlock()
			if skip {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				at.probe(ctx, p, epoch, node)
			}()
		}
	}
}

func (at *attester) probe(ctx context.Context, p *Prober, epoch uint64, node *Registration) {
	log := at.n.log.With("part", "attester", "node", node.ID, "epoch", epoch)
	pctx, cancel := context.WithTimeout(ctx, at.cfg.ProbeTimeout)
	defer cancel()
	if err := p.Probe(pctx, node.Key, node.Addrs); err != nil {
		log.Info("probe failed", "err", err)
		return
	}
	tx, err := SignTx(at.n.ChainID(), epoch, at.n.key, &Attestation{Subject: node.ID})
	if err != nil {
		log.Error("sign attestation", "err", err)
		return
	}
	if err := at.n.BroadcastTx(ctx, tx); err != nil && CodeOf(err) != CodeReplayed {
		log.Info("attestation refused", "err", err)
		return
	}
	at.mu.Lock()
	at.done[node.ID] = epoch + 1
	at.mu.Unlock()
	log.Debug("attested")
}

// attestWork returns the current epoch and the registered nodes validator
// me has not attested in it, leaving out admitted nodes a quorum already
// saw this epoch.
func (a *App) attestWork(me [32]byte) (uint64, []*Registration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := state{kv: newKV(a.base)}
	ei, err := st.epoch()
	if err != nil || !ei.Open {
		return 0, nil
	}
	nodes, err := st.nodes()
	if err != nil {
		a.log.Error("attest work", "err", err)
		return 0, nil
	}
	var work []*Registration
	for _, n := range nodes {
		if n.Status == StatusAdmitted && n.LastSeen == ei.Epoch {
			continue
		}
		mine := false
		for _, v := range st.attesters(ei.Epoch, n.ID) {
			mine = mine || v == me
		}
		if !mine {
			work = append(work, n)
		}
	}
	return ei.Epoch, work
}
