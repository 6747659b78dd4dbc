package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"slices"

	"github.com/strata-mix/strata/sphinx"
)

// Domains of the beacon and of the withheld relays' sort keys
// (docs/pki.md, "Epochs, beacons, strata and routes").
const (
	beaconDomain   = "strata-pki-beacon-v2\x00"
	withheldDomain = "strata-pki-withheld-v1\x00"
)

// NextBeacon is the beacon of epoch (≥ 1): SHA-256 of the domain, the
// beacon prev of epoch−1, epoch as 8 big-endian bytes and, for each relay of
// outputs in node id order, its id and its VRF output on prev. outputs are
// the relays the epoch's topology places by a VRF output (not those placed
// at their WithheldKey); their order does not matter. No block hash enters
// it, so no block proposer can choose it.
func NextBeacon(prev [32]byte, epoch uint64, outputs []Ranked) [32]byte {
	sorted := slices.Clone(outputs)
	slices.SortFunc(sorted, func(a, b Ranked) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	h := sha256.New()
	h.Write([]byte(beaconDomain))
	h.Write(prev[:])
	h.Write(binary.BigEndian.AppendUint64(nil, epoch))
	for _, r := range sorted {
		h.Write(r.ID[:])
		h.Write(r.VRF[:])
	}
	return [32]byte(h.Sum(nil))
}

// WithheldKey is the sort key of an admitted relay that has a mix key for
// the epoch but no VRF output on beacon (the beacon its VRF would be on):
// SHA-512 of the domain, the beacon and the relay's id. Anyone can compute
// it, so a relay gains nothing by hiding its VRF output but a choice
// between two places.
func WithheldKey(beacon [32]byte, id sphinx.NodeID) [VRFOutputSize]byte {
	h := sha512.New()
	h.Write([]byte(withheldDomain))
	h.Write(beacon[:])
	h.Write(id[:])
	return [VRFOutputSize]byte(h.Sum(nil))
}

// epochBeacon is the beacon of epoch whose relays' sort keys are on
// vrfBeacon: vrfBeacon itself for epoch 0 (the first block's hash), else
// NextBeacon over the relays placed by VRF output.
func epochBeacon(epoch uint64, vrfBeacon [32]byte, relays []Relay) [32]byte {
	if epoch == 0 {
		return vrfBeacon
	}
	var outs []Ranked
	for _, r := range relays {
		if !r.Withheld {
			outs = append(outs, Ranked{ID: r.ID, VRF: r.VRF})
		}
	}
	return NextBeacon(vrfBeacon, epoch, outs)
}
