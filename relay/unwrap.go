package relay

import (
	"errors"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// unwrapLoop is one worker: it unwraps packets and passes them to the
// replay stage. One worker runs per core. The node's own packets (Inject)
// go first: they come from its cover, its home clients (rate-limited by
// the home) and its own forwarding of packets already taken from in, so
// they cannot crowd out the peers, while peers that keep in full would
// otherwise make every Inject fail.
func (r *Relay) unwrapLoop() {
	var res sphinx.Result
	for {
		select {
		case in := <-r.local:
			r.unwrap(in, &res)
			continue
		default:
		}
		select {
		case <-r.ctx.Done():
			return
		case in := <-r.local:
			r.unwrap(in, &res)
		case in := <-r.in:
			r.unwrap(in, &res)
		}
	}
}

// unwrap unwraps one packet and checks it against the routes of the epoch
// whose key opened it, before its replay tag is recorded: a packet off the
// routes is dropped whoever sent it.
func (r *Relay) unwrap(in inbound, res *sphinx.Result) {
	b := in.buf
	start := time.Now()
	epoch, err := r.cfg.Keys.unwrap(r.cfg.Format, r.cfg.Delay, *b, res)
	r.m.unwrapSeconds.Observe(time.Since(start).Seconds())
	if err == nil && r.cfg.Routes != nil {
		err = r.cfg.Routes.Check(epoch, in.from, &res.Command)
	}
	if err != nil {
		r.m.drop(reasonOf(err))
		r.putBuf(b)
		release(in.slot)
		return
	}
	c := checked{buf: b, slot: in.slot, epoch: epoch, tag: tagPrefix(&res.ReplayTag), cmd: res.Command, due: start.Add(res.Delay), payload: res.Payload}
	select {
	case r.checks <- c:
	case <-r.ctx.Done():
		r.putBuf(b)
		release(in.slot)
	}
}

// dispatch sends a packet that passed the replay check on its way: into the
// scheduler if it is to be forwarded, to the local handlers if its path ends
// here.
func (r *Relay) dispatch(c checked) {
	switch c.cmd.Kind {
	case sphinx.Forward:
		if r.cfg.NoForward {
			r.m.drop(reasonNotRelay)
			break
		}
		if !c.due.After(time.Now()) {
			r.forwardNow(c.cmd.NextHop(), c.buf)
			return
		}
		if !r.sched.Add(c.due, c.cmd.NextHop(), c.buf) {
			r.m.drop(reasonSchedulerFull)
			r.putBuf(c.buf)
		}
		return
	case sphinx.DeliverClient:
		if f := r.cfg.Local.Client; f != nil {
			f(c.cmd.Token(), c.cmd.SURBID(), c.payload)
			r.m.delivered.WithLabelValues("client").Inc()
		} else {
			r.m.drop(reasonNoClient)
		}
	case sphinx.Loop:
		if f := r.cfg.Local.Loop; f != nil {
			f(c.cmd.LoopID(), c.payload)
			r.m.delivered.WithLabelValues("loop").Inc()
		} else {
			r.m.drop(reasonNoLoop)
		}
	case sphinx.Drop:
		r.m.delivered.WithLabelValues("drop").Inc()
	default: // DeliverMailbox
		if f := r.cfg.Local.Mailbox; f != nil {
			f(c.payload)
			r.m.delivered.WithLabelValues("mailbox").Inc()
		} else {
			r.m.drop(reasonNotMailbox)
		}
	}
	r.putBuf(c.buf)
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, ErrRouteFrom):
		return reasonRouteFrom
	case errors.Is(err, ErrRoute):
		return reasonRoute
	case errors.Is(err, sphinx.ErrMAC):
		return reasonMAC
	case errors.Is(err, sphinx.ErrGroupElement):
		return reasonGroup
	case errors.Is(err, sphinx.ErrCommand):
		return reasonCommand
	case errors.Is(err, sphinx.ErrPayloadTag):
		return reasonPayload
	}
	return reasonSize
}
