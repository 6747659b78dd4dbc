package relay

import (
	"encoding/binary"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// checked is a packet between the unwrap workers and the replay stage.
type checked struct {
	buf     *[]byte
	epoch   uint64
	tag     uint64
	cmd     sphinx.Command
	due     time.Time
	payload []byte
}

// maxReplayBatch bounds one group commit of the replay stage.
const maxReplayBatch = 1024

// replayLoop is the replay stage: it takes every packet the workers have
// unwrapped since its last fsync, checks and records their tags in one group
// commit, and only then lets the survivors go on. It is the only user of
// the ReplayDB, so the tag sets need no lock.
func (r *Relay) replayLoop() {
	batch := make([]checked, 0, maxReplayBatch)
	tags := make([]Tag, 0, maxReplayBatch)
	for {
		batch = batch[:0]
		select {
		case <-r.ctx.Done():
			return
		case epoch := <-r.rotate:
			if err := r.cfg.Replay.Rotate(epoch); err != nil {
				r.log.Warn("replay DB rotation", "err", err)
			}
			continue
		case c := <-r.checks:
			batch = append(batch, c)
		}
	drain:
		for len(batch) < maxReplayBatch {
			select {
			case c := <-r.checks:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		tags = tags[:0]
		for _, c := range batch {
			tags = append(tags, Tag{Epoch: c.epoch, Prefix: c.tag})
		}
		r.cfg.Replay.Check(tags)
		for i, c := range batch {
			switch {
			case tags[i].Err != nil:
				r.log.Warn("replay check failed; dropping packet", "err", tags[i].Err)
				r.m.drop(reasonReplayDB)
				r.putBuf(c.buf)
			case tags[i].Seen:
				r.m.drop(reasonReplay)
				r.putBuf(c.buf)
			default:
				r.dispatch(c)
			}
		}
	}
}

// tagPrefix returns the replay-DB key of a replay tag.
func tagPrefix(tag *[sphinx.ReplayTagSize]byte) uint64 { return binary.BigEndian.Uint64(tag[:8]) }
