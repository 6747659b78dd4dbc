package pki

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cometbft/cometbft/mempool"
)

// registering is what an agent remembers of its intention between steps:
// the last one sent (sent again unchanged while the chain does not show
// the node, rather than paying for a new proof of work), the least work a
// new one needs, and the last condition it logged (each is logged once).
type registering struct {
	sent      []byte
	sentEpoch uint64 // the epoch the sent intention is signed for
	sentBits  uint32 // the leading zero bits its proof of work reaches
	minEpoch  uint64 // epoch of minBits
	minBits   uint32 // more than a refused proof had, in minEpoch
	noted     string
}

// note logs msg once for as long as it stays the agent's latest condition.
func (a *Agent) note(msg string, epoch uint64, args ...any) {
	key := fmt.Sprint(msg, epoch)
	if a.reg.noted == key {
		return
	}
	a.reg.noted = key
	a.cfg.Logger.Info(msg, append([]any{"epoch", epoch}, args...)...)
}

// register sends the node's intention at the price the chain asks now
// (QueryAdmission), or waits: when the epoch has accepted its
// MaxPendingPerEpoch intentions, for the next epoch; when the price rose
// between the query and the mempool (other intentions waiting in it), it
// pays one bit more on the next step. None of these is an error: each is
// logged once.
func (a *Agent) register(ctx context.Context) error {
	ch := a.cfg.Chain
	raw, _, err := ch.Query(ctx, QueryAdmission)
	if err != nil {
		return err
	}
	adm, err := DecodeAdmission(raw)
	if err != nil {
		return err
	}
	// /admission is not provable: a price above what any state of the
	// chain can ask is a lie, refused rather than paid.
	if most := a.maxPrice(); adm.PowBits > most {
		return fmt.Errorf("pki: admission: the endpoint asks %d bits of work, more than the chain's parameters ever ask (%d): not computing it", adm.PowBits, most)
	}
	if adm.Full() {
		a.note("admission full: the intention waits for the next epoch", adm.Epoch, "accepted", adm.Accepted)
		return nil
	}
	// An intention is accepted in the epoch it is signed for and the next.
	if r := &a.reg; r.sent != nil && r.sentEpoch+1 >= adm.Epoch && r.sentBits >= adm.PowBits {
		err := asTxError(ch.BroadcastTx(ctx, r.sent))
		switch CodeOf(err) {
		case CodeOK, CodeReplayed, CodeAlreadyRegistered:
			return nil
		}
		if inMempool(err) {
			return nil // still waiting for a block
		}
		a.reg.sent = nil
		return a.refused(adm, r.sentBits, err)
	}
	bits := adm.PowBits
	if a.reg.minEpoch == adm.Epoch {
		bits = min(max(bits, a.reg.minBits), a.maxPrice())
	}
	tx, err := NewIntention(ctx, ch.ChainID(), adm.Epoch, a.cfg.Identity, a.cfg.Role, a.cfg.Addrs, bits)
	if err != nil {
		return err
	}
	got := powBitsOf(ch.ChainID(), tx)
	err = asTxError(ch.BroadcastTx(ctx, tx))
	if inMempool(err) {
		err = nil
	}
	switch CodeOf(err) {
	case CodeOK, CodeAlreadyRegistered:
		a.reg.sent, a.reg.sentEpoch, a.reg.sentBits = tx, adm.Epoch, got
		a.note("intention sent", adm.Epoch, "pow_bits", got, "accepted", adm.Accepted, "addrs", a.cfg.Addrs)
		return nil
	}
	return a.refused(adm, got, err)
}

// maxPrice is the most work any state of the chain asks of an
// intention: PowBitsFor(MaxPendingPerEpoch − 1), since the cap refuses
// every intention once MaxPendingPerEpoch are in (35 bits at the
// defaults). It reads the parameters Step fetched.
func (a *Agent) maxPrice() uint32 {
	p := a.params
	if p == nil {
		return MaxPowBits
	}
	if p.MaxPendingPerEpoch == 0 {
		return min(p.PowBits, MaxPowBits)
	}
	return p.PowBitsFor(p.MaxPendingPerEpoch - 1)
}

// inMempool reports whether a broadcast was refused because the mempool
// already holds (or has just seen) the same transaction: CometBFT's
// mempool.ErrTxInCache, in process or, over RPC, as its text. The copy
// sent first is on its way, so nothing needs computing again.
func inMempool(err error) bool {
	return err != nil && (errors.Is(err, mempool.ErrTxInCache) || strings.Contains(err.Error(), mempool.ErrTxInCache.Error()))
}

// refused handles the chain's refusal of an intention whose proof reached
// bits: a full epoch or a risen price is a wait (nil), anything else an
// error.
func (a *Agent) refused(adm Admission, bits uint32, err error) error {
	switch CodeOf(err) {
	case CodePendingFull:
		a.note("admission full: the intention waits for the next epoch", adm.Epoch, "accepted", adm.Accepted)
		return nil
	case CodeInsufficientWork:
		a.reg.minEpoch, a.reg.minBits = adm.Epoch, bits+1
		a.note("the price of an intention rose: paying more", adm.Epoch, "pow_bits", bits+1)
		return nil
	}
	return fmt.Errorf("pki: intention: %w", err)
}

// powBitsOf returns the leading zero bits of a signed intention's proof
// of work (0 if tx does not decode).
func powBitsOf(chainID string, raw []byte) uint32 {
	tx, err := DecodeTx(raw)
	if err != nil {
		return 0
	}
	return uint32(leadingZeros(powHash(chainID, tx.unsigned)))
}
