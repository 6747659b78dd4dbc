// Package sphinx implements Strata's mix packet format: a Sphinx variant over
// X25519 with deterministic per-hop delays, single-use reply blocks (SURBs) and
// replay tags.
//
// The package owns the byte layout of packets and SURBs, the per-hop key
// schedule, the header MACs, the Lioness payload cipher and the per-hop delay
// rule. It is a pure library: it does no I/O, keeps no state between calls and
// knows nothing of networks, epochs or the PKI; callers supply keys, paths and
// randomness. It must not import any other Strata package.
//
// Every size derives from one [Geometry] (see [DefaultGeometry]). A sender
// builds packets with [Geometry.NewPacket] or replies with [Geometry.NewReply];
// a node processes them in place with [Geometry.Unwrap], which allocates
// nothing and is safe for concurrent use. The byte layout and the key schedule
// are specified in docs/sphinx.md; sphinx/testdata/vectors.json holds test
// vectors.
package sphinx
