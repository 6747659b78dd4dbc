package testnet

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/strata-mix/strata/node"
	"github.com/strata-mix/strata/queue"
)

// The demo clients' messages travel through package queue over mailboxes,
// with node.MailQueue (the same code node.Chat uses; docs/queue.md): each
// chunk is an answerless Put into the recipient's mailbox, the recipient's
// owner feeds the stored chunks to its queue, acks come back end to end
// through the SURBs packed with the chunks, and the queue's loss follows
// the client's loop stream.

// openQueue opens d's message queue in dir; runQueue plugs it into d's
// payload stream.
func (d *demoClient) openQueue(dir string) error {
	mq, err := node.OpenMailQueue(node.MailQueueConfig{
		Path: filepath.Join(dir, "queue.db"), Client: d.c, Owner: d.owner, Codec: d.codec, Type: demoType,
		ForwardDelay: node.MailQueueForwardDelay(d.t.cfg.MeanDelay),
		MaxBackoff:   30 * time.Second, Deadline: 10 * time.Minute,
		OnOutcome: d.outcome, OnSent: d.markSent,
		Logger: d.t.cfg.Logger.With("node", d.name, "part", "queue"),
	})
	if err != nil {
		return fmt.Errorf("testnet: %s: %w", d.name, err)
	}
	d.mq = mq
	return nil
}

// markSent moves the messages whose chunks payload carries from queued to
// sent.
func (d *demoClient) markSent(payload []byte) {
	pl, err := queue.Parse(payload)
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range pl.Chunks {
		if out := d.byMsg[c.ID]; out != nil && out.Status == "queued" {
			out.Status = "sent"
		}
	}
}

// outcome learns what became of a queued message: acknowledged by the
// recipient's queue, or given up.
func (d *demoClient) outcome(o queue.Outcome) {
	d.mu.Lock()
	out := d.byMsg[o.ID]
	delete(d.byMsg, o.ID)
	lost := false
	if out != nil {
		switch {
		case o.Err != nil && out.Status != "delivered":
			out.Status = "lost"
			lost = true
		case o.Err == nil && out.Status != "delivered":
			out.Status = "acked"
		}
	}
	d.mu.Unlock()
	if lost {
		d.t.lost(out.ID)
	}
}

// handleStored takes a message d's mailbox delivered: queue chunks (and
// SURBs) for d's queue, or, from a direct Put, a sealed message as is. It
// returns the sealed messages it completed.
func (d *demoClient) handleStored(data []byte) [][]byte {
	if d.mq != nil {
		return d.mq.HandleStored(data)
	}
	return [][]byte{data}
}
