package mailbox

import "errors"

// The node's SURB stock: per mailbox, the SURBs its owner sent, each with
// the key epoch its request named, kept in memory and in the store (so a
// restart keeps them). Additions are on disk before the request that made
// them is answered or pushed through; removals (spent or expired SURBs)
// are written by the flusher with the delivered marks.

// epochUsable reports whether SURBs made under key epoch e may still be
// used in epoch cur: relays accept packets under the current and the
// previous epoch's keys, and clients keep the reply keys as long.
func epochUsable(e, cur uint64) bool { return e+1 >= cur }

// epochAcceptable reports whether a request may stock SURBs of epoch e in
// epoch cur: usable, and not more than one epoch ahead (the owner's view
// of the chain may be one epoch ahead of the node's).
func epochAcceptable(e, cur uint64) bool { return epochUsable(e, cur) && e <= cur+1 }

// addStock adds SURBs of key epoch epoch to a mailbox's stock (existing
// mailboxes only), on disk before it returns.
func (n *Node) addStock(id ID, epoch uint64, surbs [][]byte) {
	if len(surbs) == 0 {
		return
	}
	cur := n.cfg.Epoch()
	if !epochAcceptable(epoch, cur) {
		n.m.dropped.WithLabelValues("surb_epoch").Add(float64(len(surbs)))
		return
	}
	n.mu.Lock()
	room := MaxStock - len(n.stock[id])
	n.mu.Unlock()
	if room <= 0 {
		return
	}
	surbs = surbs[:min(len(surbs), room)]
	added, err := n.cfg.Store.AddSURBs(id, epoch, surbs)
	if err != nil {
		if !errors.Is(err, ErrNoMailbox) {
			n.log.Warn("mailbox stock", "err", err)
		}
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.fresh(id, cur)
	k := max(min(len(added), MaxStock-len(s)), 0)
	n.set(id, append(s, added[:k]...))
	if k < len(added) {
		// Another request filled the stock meanwhile.
		n.spend(added[k:])
	}
	delete(n.asked, id)
}

// spend queues the removal of ss from the store. Locked (n.mu) or not.
func (n *Node) spend(ss []StockedSURB) {
	if len(ss) == 0 {
		return
	}
	n.markMu.Lock()
	for _, x := range ss {
		n.spent = append(n.spent, x.Key)
	}
	n.markMu.Unlock()
	n.kickFlush()
}

// fresh drops id's SURBs whose epoch is no longer usable and returns what
// is left. Locked.
func (n *Node) fresh(id ID, epoch uint64) []StockedSURB {
	s := n.stock[id]
	k := 0
	var gone []StockedSURB
	for _, x := range s {
		if epochUsable(x.Epoch, epoch) {
			s[k] = x
			k++
		} else {
			gone = append(gone, x)
		}
	}
	if len(gone) == 0 {
		return s
	}
	n.spend(gone)
	clear(s[k:])
	n.set(id, s[:k])
	return s[:k]
}

// set replaces id's stock, keeping the total. Locked.
func (n *Node) set(id ID, s []StockedSURB) {
	n.total += len(s) - len(n.stock[id])
	if len(s) == 0 {
		delete(n.stock, id)
		return
	}
	n.stock[id] = s
}

// take removes a SURB from id's stock unless no more than reserve are
// left; ok false when none may be used. It takes the newest SURB of the
// newest epoch (the newest SURBs lead to the owner's current home).
func (n *Node) take(id ID, reserve int) (surb []byte, left int, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.fresh(id, n.cfg.Epoch())
	if len(s) <= reserve {
		return nil, len(s), false
	}
	best := len(s) - 1
	for i := len(s) - 2; i >= 0; i-- {
		if s[i].Epoch > s[best].Epoch {
			best = i
		}
	}
	x := s[best]
	copy(s[best:], s[best+1:])
	s[len(s)-1] = StockedSURB{}
	n.set(id, s[:len(s)-1])
	n.spend([]StockedSURB{x})
	return x.SURB, len(s) - 1, true
}

// Stock returns how many SURBs mailbox id has in stock.
func (n *Node) Stock(id ID) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.fresh(id, n.cfg.Epoch()))
}
