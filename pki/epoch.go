package pki

import (
	"fmt"
)

// BeginBlock opens a new epoch when the block at height does: the first
// block of the chain opens epoch 0, and every Params.EpochBlocks blocks
// after it another. The first block's hash is epoch 0's beacon; every later
// epoch's beacon is the one its topology was frozen with (NextBeacon of the
// previous beacon and the VRF outputs on it), so no block hash enters it.
// Opening epoch e drops the nodes no quorum has seen for DropAfter epochs,
// forgets intentions older than PendingEpochs, and expires mix keys,
// topologies, attestations and replay records that can no longer matter.
func (m *Machine) BeginBlock(height int64, hash [32]byte) error {
	ei, err := m.st.epoch()
	if err != nil {
		return err
	}
	switch {
	case !ei.Open:
		m.st.setEpoch(EpochInfo{Epoch: 0, Open: true, Start: height, Beacon: hash})
		return nil
	case height < ei.NextStart(m.params):
		return nil
	case height > ei.NextStart(m.params):
		return fmt.Errorf("pki: block %d skips the opening of epoch %d at %d", height, ei.Epoch+1, ei.NextStart(m.params))
	}
	e := ei.Epoch + 1
	nodes, err := m.st.nodes()
	if err != nil {
		return err
	}
	for _, n := range nodes {
		gone := n.Status == StatusAdmitted && n.LastSeen+m.params.DropAfter < e ||
			n.Status == StatusPending && n.Registered+m.params.PendingEpochs <= e
		if gone {
			m.st.removeNode(n.ID)
		}
	}
	// Keys of the previous epoch stay for packets still in flight when it
	// ended; older ones are dead, and so are the SURBs made with them.
	if e >= 2 {
		m.st.pruneBefore(prefixKey, 32, e-1)
		m.st.pruneSeen(e - 1)
	}
	m.st.pruneBefore(prefixAtt, 0, e)
	m.st.pruneBefore(prefixTopo, 0, e)
	raw, ok := m.st.topology(e)
	if !ok {
		// The freeze height fell inside the previous epoch, so this
		// happens only if the chain stopped in between; build it late
		// rather than run an epoch without a topology.
		if err := m.freeze(e, ei.Beacon); err != nil {
			return err
		}
		raw, _ = m.st.topology(e)
	}
	beacon, err := topologyBeacon(raw)
	if err != nil {
		return fmt.Errorf("pki: stored topology of epoch %d: %w", e, err)
	}
	m.st.setEpoch(EpochInfo{Epoch: e, Open: true, Start: height, Beacon: beacon})
	return nil
}

// EndBlock freezes the next epoch's topology at the freeze height and, in
// epoch 0, rebuilds epoch 0's live topology when the block changed what
// it depends on.
func (m *Machine) EndBlock(height int64) error {
	ei, err := m.st.epoch()
	if err != nil || !ei.Open {
		return err
	}
	if ei.Epoch == 0 {
		if _, dirty := m.st.kv.get(keyTopoLive); dirty || height == ei.Start {
			if err := m.freeze(0, ei.Beacon); err != nil {
				return err
			}
		}
	}
	m.st.kv.del(keyTopoLive)
	if height == ei.FreezeHeight(m.params) {
		return m.freeze(ei.Epoch+1, ei.Beacon)
	}
	return nil
}

// freeze builds and stores the topology of epoch from the relays admitted
// now that hold a mix key for it, each placed by its VRF output on beacon
// (the beacon of epoch-1, or of epoch 0 for epoch 0) or, when it has none,
// flagged withheld at its WithheldKey; the document carries the epoch's
// beacon (epochBeacon), which BeginBlock makes the epoch's. A key that fails
// sphinx.PublicKey.Validate (none can enter the state, but a state written
// by an older rule could hold one) leaves its node out, as a missing key does.
func (m *Machine) freeze(epoch uint64, beacon [32]byte) error {
	vrfEpoch := uint64(0)
	if epoch > 0 {
		vrfEpoch = epoch - 1
	}
	nodes, err := m.st.nodes()
	if err != nil {
		return err
	}
	var relays []Relay
	var mailboxes []NodeInfo
	for _, n := range nodes {
		// Only nodes a quorum saw in the epoch the freeze happens in (the
		// VRF epoch): a dead relay leaves the next topology at once, though
		// its registration stays for DropAfter epochs.
		if n.Status != StatusAdmitted || n.LastSeen < vrfEpoch {
			continue
		}
		key, ok := m.st.mixKey(n.ID, epoch)
		if !ok || key.Validate() != nil {
			continue
		}
		info := NodeInfo{ID: n.ID, IdentityKey: n.Key, Addrs: n.Addrs, MixKey: key}
		switch n.Role {
		case RoleMailbox:
			mailboxes = append(mailboxes, info)
		case RoleRelay:
			// Placed by keys on beacon(epoch−1) only if it registered
			// before that beacon was computed (at the freeze in epoch−2):
			// a relay that registered later could grind its identity key
			// against the known beacon and pick its stratum. Epochs 0 and
			// 1 are placed on beacon(0), block 1's hash (bootstrap).
			if epoch > 1 && n.Registered+2 > epoch {
				continue
			}
			r := Relay{NodeInfo: info, Withheld: true}
			if e, out, ok := m.st.vrf(n.ID); ok && e == vrfEpoch {
				r.VRF, r.Withheld = out, false
			}
			relays = append(relays, r)
		}
	}
	t, err := buildTopology(m.chainID, epoch, beacon, m.params, relays, mailboxes)
	if err != nil {
		return fmt.Errorf("pki: topology of epoch %d: %w", epoch, err)
	}
	m.st.setTopology(epoch, t.Encode())
	return nil
}
