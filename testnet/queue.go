package testnet

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/mailbox"
	"github.com/strata-mix/strata/queue"
	"github.com/strata-mix/strata/sphinx"
)

// The demo clients' messages travel through package queue (docs/queue.md):
//
//   - a queue.Recipient is the other client's mailbox: its node id (32
//     bytes) followed by its mailbox id (16 bytes);
//   - each queue packet to a recipient is one mailbox Put (OpPut) into that
//     mailbox, without an answer SURB: the queue's own end-to-end acks
//     replace the node's "stored" answer, so a chunk costs one packet, not
//     two, and the SURB's room goes to symbols. The queue's payload size is
//     what a Put may carry and the node may push back in one delivery;
//   - the recipient's mailbox.Owner receives the stored chunks (pushed
//     through its stocked SURBs, or fetched) and feeds them to its queue's
//     Handle; the queue acks through the SURBs the sender packed with its
//     chunks, and those replies reach the sender's Receive, where dispatch
//     hands whatever is neither its mailbox's nor a direct Put's answer to
//     the queue;
//   - the queue's loss estimate follows the client's loop stream
//     (Stats.RecentLoopLoss), so repair overhead follows the measured loss.

// queueRecipient names the mailbox of d as a queue recipient.
func queueRecipient(d *demoClient) queue.Recipient {
	return queue.Recipient(string(d.node[:]) + string(d.box[:]))
}

// parseRecipient is queueRecipient's inverse.
func parseRecipient(r queue.Recipient) (sphinx.NodeID, mailbox.ID, error) {
	var n sphinx.NodeID
	var id mailbox.ID
	if len(r) != len(n)+len(id) {
		return n, id, fmt.Errorf("testnet: queue recipient of %d bytes", len(r))
	}
	copy(n[:], r)
	copy(id[:], r[len(n):])
	return n, id, nil
}

// queuePayloadSize is how much of a packet the queue may fill: a Put
// without SURBs must fit in the codec's requests, and the stored message in
// one delivery of the node.
func queuePayloadSize(codec mailbox.Codec) (int, error) {
	b, err := codec.EncodeRequest(&mailbox.Request{Op: mailbox.OpPut, Type: demoType}, nil)
	if err != nil {
		return 0, fmt.Errorf("testnet: put overhead: %w", err)
	}
	return min(codec.MaxSize-len(b), codec.MaxSize-mailbox.DeliverOverhead), nil
}

// openQueue opens d's message queue in dir and plugs it into d's payload
// stream.
func (d *demoClient) openQueue(dir string) error {
	size, err := queuePayloadSize(d.codec)
	if err != nil {
		return err
	}
	q, err := queue.Open(queue.Config{
		Path: filepath.Join(dir, "queue.db"), PayloadSize: size, SURBs: d.c,
		// Forward route (four hops) plus the wait for the mailbox's push.
		ForwardDelay: time.Second + 8*d.t.cfg.MeanDelay,
		MaxBackoff:   30 * time.Second, Deadline: 10 * time.Minute,
		OnOutcome: d.outcome,
		Logger:    d.t.cfg.Logger.With("node", d.name, "part", "queue"),
	})
	if err != nil {
		return fmt.Errorf("testnet: %s: %w", d.name, err)
	}
	d.q = q
	d.c.SetSource(queue.Source{Queue: q, Route: d.route})
	return nil
}

// runQueue runs d's queue and feeds it the loop stream's loss until ctx
// ends.
func (d *demoClient) runQueue(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.q.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.t.cfg.Logger.Warn("queue stopped", "client", d.name, "err", err)
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-tick.C:
			d.q.SetLoss(d.c.Stats().RecentLoopLoss)
		}
	}
}

// route turns a queue packet into what the client sends: acks through the
// SURB they answer, chunks as a Put into the recipient's mailbox.
func (d *demoClient) route(p queue.Packet) (client.Destination, []byte, bool) {
	if p.SURB != nil {
		dest, err := d.c.ViaSURB(p.SURB)
		if err != nil {
			d.t.cfg.Logger.Debug("queue ack: bad SURB", "client", d.name, "err", err)
			return client.Destination{}, nil, false
		}
		return dest, p.Payload, true
	}
	node, box, err := parseRecipient(p.To)
	if err != nil {
		d.t.cfg.Logger.Warn("queue packet", "client", d.name, "err", err)
		return client.Destination{}, nil, false
	}
	b, err := d.codec.EncodeRequest(&mailbox.Request{Op: mailbox.OpPut, Mailbox: box, Type: demoType, Message: p.Payload}, nil)
	if err != nil {
		d.t.cfg.Logger.Warn("queue packet", "client", d.name, "err", err)
		return client.Destination{}, nil, false
	}
	d.markSent(p.Payload)
	return client.ToMailbox(node), b, true
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
	if d.q != nil {
		msgs, err := d.q.Handle("mailbox", data)
		if err == nil || len(msgs) > 0 {
			out := make([][]byte, 0, len(msgs))
			for _, m := range msgs {
				out = append(out, m.Body)
			}
			if err != nil {
				d.t.cfg.Logger.Debug("queue chunk", "client", d.name, "err", err)
			}
			return out
		}
		if !errors.Is(err, queue.ErrPayload) {
			d.t.cfg.Logger.Debug("queue chunk", "client", d.name, "err", err)
			return nil
		}
	}
	return [][]byte{data}
}
