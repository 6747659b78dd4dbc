package mailbox

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/strata-mix/strata/sphinx"
)

// ErrFirstHop is returned for a packet whose first hop is not a relay of
// the first stratum of the current or previous epoch: a mailbox node sends
// only into the first stratum, so a SURB cannot make it dial an arbitrary
// node.
var ErrFirstHop = errors.New("mailbox: first hop is not a first-stratum relay")

// FirstHops is the set of relays a mailbox node may send into: the first
// stratum of the current epoch and of the one before it (SURBs made just
// before an epoch change still name the old stratum). Its Allowed method
// is a NodeConfig.FirstHop. The zero value allows nothing; it is safe for
// concurrent use.
type FirstHops struct {
	mu        sync.RWMutex
	epoch     uint64
	set       bool
	cur, prev map[sphinx.NodeID]bool
}

// Set records the first stratum of epoch. A later epoch moves the current
// set to the previous one (only if it is the epoch right before; older
// sets are dropped); the same epoch replaces its set (a topology
// re-published within the epoch); the epoch right before the current one
// becomes the previous set (a node started mid-epoch reads the current
// topology first, then the previous one, whose SURBs are still in use);
// an older epoch is ignored.
func (f *FirstHops) Set(epoch uint64, stratum []sphinx.NodeID) {
	m := make(map[sphinx.NodeID]bool, len(stratum))
	for _, id := range stratum {
		m[id] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case !f.set:
		f.cur = m
	case epoch == f.epoch:
		f.cur = m
	case epoch == f.epoch+1:
		f.prev, f.cur = f.cur, m
	case epoch > f.epoch:
		f.prev, f.cur = nil, m
	case epoch+1 == f.epoch:
		f.prev = m
		return
	default:
		return
	}
	f.epoch, f.set = epoch, true
}

// Allowed reports whether id is a relay of the first stratum of the
// current or the previous epoch.
func (f *FirstHops) Allowed(id sphinx.NodeID) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cur[id] || f.prev[id]
}

// SendCover sends a cover packet the node's operator made — a loop of
// relay.Cover ending back at this node — through the same path as the
// node's replies: only to a first-stratum relay (NodeConfig.FirstHop,
// else ErrFirstHop, counted as dropped{reason="first_hop"}), through
// NodeConfig.Send with a context that is already done, so it never waits
// on a full link. ctx is not used: the send does not wait.
func (n *Node) SendCover(_ context.Context, to sphinx.NodeID, pkt []byte) error {
	return n.send(to, pkt)
}

// send is the node's one way out: replies and cover loops both take it.
func (n *Node) send(to sphinx.NodeID, pkt []byte) error {
	if !n.cfg.FirstHop(to) {
		n.m.dropped.WithLabelValues("first_hop").Inc()
		return fmt.Errorf("%w: %v", ErrFirstHop, to)
	}
	if err := n.cfg.Send(n.noWait, to, pkt); err != nil {
		n.m.dropped.WithLabelValues("send").Inc()
		return err
	}
	return nil
}
