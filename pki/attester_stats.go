package pki

import "sync/atomic"

// ProbeCounters count a validator's probe work, by the class of the node
// when its probe started. Set AttesterConfig.Stats to one to read them;
// they are safe for concurrent use.
type ProbeCounters struct {
	pendingStarted, pendingFailed   atomic.Uint64
	admittedStarted, admittedFailed atomic.Uint64
}

// ProbeCount is a snapshot of ProbeCounters.
type ProbeCount struct {
	// PendingStarted and PendingFailed count probes of pending nodes;
	// AdmittedStarted and AdmittedFailed probes of admitted ones.
	PendingStarted, PendingFailed   uint64
	AdmittedStarted, AdmittedFailed uint64
}

// Started is every probe begun.
func (c ProbeCount) Started() uint64 { return c.PendingStarted + c.AdmittedStarted }

// Snapshot reads the counters.
func (c *ProbeCounters) Snapshot() ProbeCount {
	if c == nil {
		return ProbeCount{}
	}
	return ProbeCount{
		PendingStarted: c.pendingStarted.Load(), PendingFailed: c.pendingFailed.Load(),
		AdmittedStarted: c.admittedStarted.Load(), AdmittedFailed: c.admittedFailed.Load(),
	}
}

func (c *ProbeCounters) started(admitted bool) {
	switch {
	case c == nil:
	case admitted:
		c.admittedStarted.Add(1)
	default:
		c.pendingStarted.Add(1)
	}
}

func (c *ProbeCounters) failed(admitted bool) {
	switch {
	case c == nil:
	case admitted:
		c.admittedFailed.Add(1)
	default:
		c.pendingFailed.Add(1)
	}
}
