package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
)

// Serverless commit ordering (docs/e2e.md, "Concurrent commits").
//
// No delivery service orders commits, so two members may commit on the same
// epoch. Every member applies the same rule: for each epoch the winning
// commit is the one with the lowest SHA-256 of its MLSMessage bytes. A
// member keeps the state it had before each of the last HistoryDepth
// commits; a commit for an epoch it already left either loses (higher
// hash: rejected with ErrCommitLost, state untouched), repeats the one it
// applied (ErrReplay), or wins (lower hash): the member rolls back to the
// state before that epoch's commit, applies the winner, and reports what it
// lost (its own commits' intents and application messages it sent on the
// losing branch) so they can be re-proposed and re-sent on the new epoch.

// HistoryDepth is how many epochs back a late winning commit can still roll
// a member back.
const HistoryDepth = 8

// maxFuture bounds the handshake messages buffered for epochs we have not
// reached yet.
const maxFuture = 64

type commitRecord struct {
	Epoch  uint64   // the epoch the commit was made on
	Before []byte   // Group.Marshal() before applying it
	Hash   [32]byte // SHA-256 of the commit message
	Own    bool
	Intent Intent // for our own commits
}

// Intent is what one of our commits meant to do, kept so a commit that
// loses the tie-break can be redone.
type Intent struct {
	Adds    [][]byte // key packages
	Removes [][]byte // Ed25519 keys of members to remove
}

type sentRecord struct {
	Epoch     uint64
	Plaintext []byte
}

// ordered is a Group with commit ordering. Not safe for concurrent use.
type ordered struct {
	b      Backend
	id     *Identity
	g      Group
	hist   []commitRecord
	sent   []sentRecord
	future [][]byte
	// seen holds the SHA-256 of every application message accepted in the
	// last HistoryDepth epochs (with its epoch): mls-go v1.0.0 decrypts a
	// replayed PrivateMessage a second time, so replays are caught here.
	seen map[[32]byte]uint64
}

// Rollback reports a switch to a winning commit on an earlier epoch.
type Rollback struct {
	FromEpoch uint64
	ToEpoch   uint64
	Lost      []Intent // our own commits that lost
	Resend    [][]byte // plaintexts we sent on the losing branch
}

func commitHash(msg []byte) [32]byte { return sha256.Sum256(msg) }

func (o *ordered) commit(in Intent, removes []uint32) (commit, welcome []byte, err error) {
	before, err := o.g.Marshal()
	if err != nil {
		return nil, nil, err
	}
	epoch := o.g.Epoch()
	commit, welcome, err = o.g.Commit(in.Adds, removes)
	if err != nil {
		return nil, nil, err
	}
	o.record(commitRecord{Epoch: epoch, Before: before, Hash: commitHash(commit), Own: true, Intent: in})
	return commit, welcome, nil
}

func (o *ordered) record(r commitRecord) {
	for k, e := range o.seen {
		if e+HistoryDepth < r.Epoch {
			delete(o.seen, k)
		}
	}
	o.hist = append(o.hist, r)
	if len(o.hist) > HistoryDepth {
		o.hist = append([]commitRecord{}, o.hist[len(o.hist)-HistoryDepth:]...)
	}
	// Plaintexts sent before the oldest epoch we can roll back to are final.
	keep := o.sent[:0]
	for _, s := range o.sent {
		if s.Epoch >= o.hist[0].Epoch {
			keep = append(keep, s)
		}
	}
	o.sent = keep
}

func (o *ordered) encrypt(pt []byte) ([]byte, error) {
	ct, err := o.g.Encrypt(pt)
	if err != nil {
		return nil, err
	}
	if len(o.hist) > 0 {
		o.sent = append(o.sent, sentRecord{Epoch: o.g.Epoch(), Plaintext: append([]byte{}, pt...)})
	}
	return ct, nil
}

// receive processes one message. For a commit on an earlier epoch that
// wins, rb is set. Messages for a future epoch are buffered (ErrFutureEpoch)
// and replayed once the group reaches their epoch; drained reports the
// results of those replays.
func (o *ordered) receive(msg []byte) (p Processed, rb *Rollback, drained []Processed, err error) {
	h, err := o.b.Header(msg)
	if err != nil {
		return Processed{}, nil, nil, err
	}
	if h.Kind == KindWelcome {
		return Processed{}, nil, nil, fmt.Errorf("%w: welcome sent to a group", ErrMalformed)
	}
	if !bytes.Equal(h.GroupID, o.g.ID()) {
		return Processed{}, nil, nil, ErrWrongGroup
	}
	cur := o.g.Epoch()
	switch {
	case h.Kind == KindApplication:
		sum := sha256.Sum256(msg)
		if _, dup := o.seen[sum]; dup {
			return Processed{}, nil, nil, fmt.Errorf("%w: application message", ErrReplay)
		}
		if h.Epoch+HistoryDepth < cur {
			return Processed{}, nil, nil, fmt.Errorf("%w: application message for epoch %d, we are at %d", ErrStaleEpoch, h.Epoch, cur)
		}
		p, err = o.g.Process(msg)
		if err != nil {
			return Processed{}, nil, nil, err
		}
		if o.seen == nil {
			o.seen = make(map[[32]byte]uint64)
		}
		o.seen[sum] = h.Epoch
		return p, nil, nil, nil
	case h.Epoch > cur:
		if len(o.future) >= maxFuture {
			return Processed{}, nil, nil, fmt.Errorf("%w (buffer full)", ErrFutureEpoch)
		}
		for _, f := range o.future {
			if bytes.Equal(f, msg) {
				return Processed{}, nil, nil, ErrReplay
			}
		}
		o.future = append(o.future, append([]byte{}, msg...))
		return Processed{}, nil, nil, fmt.Errorf("%w: buffered until epoch %d", ErrFutureEpoch, h.Epoch)
	case h.Epoch == cur && h.Kind == KindProposal:
		p, err = o.g.Process(msg)
		return p, nil, nil, err
	case h.Epoch == cur:
		before, err := o.g.Marshal()
		if err != nil {
			return Processed{}, nil, nil, err
		}
		p, err = o.g.Process(msg)
		if err != nil {
			return Processed{}, nil, nil, err
		}
		o.record(commitRecord{Epoch: cur, Before: before, Hash: commitHash(msg)})
		return p, nil, o.drain(), nil
	case h.Kind == KindProposal:
		return Processed{}, nil, nil, fmt.Errorf("%w: proposal for epoch %d, we are at %d", ErrStaleEpoch, h.Epoch, cur)
	}
	// A commit for an epoch we already left.
	i := -1
	for j, r := range o.hist {
		if r.Epoch == h.Epoch {
			i = j
		}
	}
	if i < 0 {
		return Processed{}, nil, nil, fmt.Errorf("%w: commit for epoch %d, we are at %d", ErrStaleEpoch, h.Epoch, cur)
	}
	hash := commitHash(msg)
	switch c := bytes.Compare(hash[:], o.hist[i].Hash[:]); {
	case c == 0:
		return Processed{}, nil, nil, fmt.Errorf("%w: commit for epoch %d already applied", ErrReplay, h.Epoch)
	case c > 0:
		return Processed{}, nil, nil, fmt.Errorf("%w: epoch %d", ErrCommitLost, h.Epoch)
	}
	g, err := o.b.Load(o.id, o.hist[i].Before)
	if err != nil {
		return Processed{}, nil, nil, err
	}
	p, err = g.Process(msg)
	if err != nil {
		return Processed{}, nil, nil, err
	}
	rb = &Rollback{FromEpoch: cur, ToEpoch: g.Epoch()}
	for _, r := range o.hist[i:] {
		if r.Own {
			rb.Lost = append(rb.Lost, r.Intent)
		}
	}
	keep := o.sent[:0]
	for _, s := range o.sent {
		if s.Epoch > h.Epoch {
			rb.Resend = append(rb.Resend, s.Plaintext)
		} else {
			keep = append(keep, s)
		}
	}
	o.sent = keep
	before := o.hist[i].Before
	o.hist = o.hist[:i]
	o.g = g
	o.record(commitRecord{Epoch: h.Epoch, Before: before, Hash: hash})
	return p, rb, o.drain(), nil
}

// drain replays buffered messages that have become current.
func (o *ordered) drain() []Processed {
	var out []Processed
	for progress := true; progress; {
		progress = false
		cur := o.g.Epoch()
		keep := o.future[:0]
		var ready [][]byte
		for _, f := range o.future {
			h, err := o.b.Header(f)
			switch {
			case err != nil || h.Epoch < cur:
			case h.Epoch == cur:
				ready = append(ready, f)
			default:
				keep = append(keep, f)
			}
		}
		o.future = keep
		// Proposals before commits, commits lowest hash first.
		sortReady(o.b, ready)
		for _, f := range ready {
			// Failures (a lost tie-break, bad input) just drop the message.
			if p, _, d, err := o.receive(f); err == nil {
				out = append(out, p)
				out = append(out, d...)
				progress = true
			}
		}
	}
	return out
}

func sortReady(b Backend, msgs [][]byte) {
	key := func(m []byte) (int, [32]byte) {
		h, _ := b.Header(m)
		if h.Kind == KindProposal {
			return 0, [32]byte{}
		}
		return 1, commitHash(m)
	}
	for i := 1; i < len(msgs); i++ {
		for j := i; j > 0; j-- {
			ka, ha := key(msgs[j-1])
			kb, hb := key(msgs[j])
			if ka < kb || (ka == kb && bytes.Compare(ha[:], hb[:]) <= 0) {
				break
			}
			msgs[j-1], msgs[j] = msgs[j], msgs[j-1]
		}
	}
}
