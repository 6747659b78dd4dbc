// Package sim is Strata's anonymity simulator: a discrete-event simulation
// of a Strata network (Loopix clients, relays in strata with restricted
// routes or a full mesh, per-hop delays, corrupt relays, a global passive
// adversary) that measures what users get for their latency and bandwidth:
// the Shannon entropy of target messages at the exit, end-to-end latency
// and the cover-traffic overhead. It also writes sweeps as CSV and plots.
//
// It owns the simulation model and the probability propagation that turns
// an observed trace into the adversary's belief (docs/sim.md). It reuses,
// never copies, the rules the real network runs: the per-hop delay rule
// (sphinx.DelayPolicy.Sample) and the strata and successor rules
// (pki.NewGraph). It must not import relay, client, queue, mailbox, e2e,
// transport or any networking: a simulation runs on one goroutine, in
// simulated time, and touches nothing but memory and the files it is told
// to write.
package sim
