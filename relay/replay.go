package relay

import (
	"encoding/binary"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// checked is a packet between the unwrap workers and the replay stage.
type checked struct {
	buf     *[]byte
	slot    chan struct{} // the sender's pipeline slot (inbound.slot)
	epoch   uint64
	tag     uint64
	cmd     sphinx.Command
	due     time.Time
	payload []byte
}

// maxReplayBatch bounds one group commit of the replay stage.
const maxReplayBatch = 1024

// commit is one group commit: the packets and their replay verdicts.
type commit struct {
	items []checked
	tags  []Tag
}

// replayCommits is how many commits are in flight: one being checked and
// fsynced while the one before is dispatched, and spares.
const replayCommits = 4

// replayLoop is the replay stage: it takes every packet the workers have
// unwrapped since its last fsync, checks and records their tags in one group
// commit, and only then hands them to dispatchLoop, which sends them on
// while the next commit's fsync runs. It is the only user of the ReplayDB,
// so the tag sets need no lock.
func (r *Relay) replayLoop() {
	for {
		var cm *commit
		select {
		case <-r.ctx.Done():
			return
		case cm = <-r.freeCommits:
		}
		select {
		case <-r.ctx.Done():
			return
		case epoch := <-r.rotate:
			if err := r.cfg.Replay.Rotate(epoch); err != nil {
				r.log.Warn("replay DB rotation", "err", err)
			}
			r.freeCommits <- cm
			continue
		case c := <-r.checks:
			cm.items = append(cm.items, c)
		}
	drain:
		for len(cm.items) < maxReplayBatch {
			select {
			case c := <-r.checks:
				cm.items = append(cm.items, c)
			default:
				break drain
			}
		}
		for _, c := range cm.items {
			cm.tags = append(cm.tags, Tag{Epoch: c.epoch, Prefix: c.tag})
		}
		r.cfg.Replay.Check(cm.tags)
		select {
		case r.commits <- cm:
		case <-r.ctx.Done():
			return
		}
	}
}

// dispatchLoop sends on the packets of each durable commit.
func (r *Relay) dispatchLoop() {
	for {
		var cm *commit
		select {
		case <-r.ctx.Done():
			return
		case cm = <-r.commits:
		}
		for i, c := range cm.items {
			switch {
			case cm.tags[i].Err != nil:
				r.log.Warn("replay check failed; dropping packet", "err", cm.tags[i].Err)
				r.m.drop(reasonReplayDB)
				r.putBuf(c.buf)
			case cm.tags[i].Seen:
				r.m.drop(reasonReplay)
				r.putBuf(c.buf)
			default:
				r.dispatch(c)
			}
			release(c.slot)
		}
		cm.items, cm.tags = cm.items[:0], cm.tags[:0]
		r.freeCommits <- cm
	}
}

// tagPrefix returns the replay-DB key of a replay tag.
func tagPrefix(tag *[sphinx.ReplayTagSize]byte) uint64 { return binary.BigEndian.Uint64(tag[:8]) }
