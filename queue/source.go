package queue

import (
	"time"

	"github.com/strata-mix/strata/client"
)

// Source plugs a Queue into a client's payload stream
// (client.Client.SetSource): at each payload slot the client asks it for a
// packet, and it hands over the queue's next one, routed by Route.
type Source struct {
	Queue *Queue
	// Route turns a packet into a destination and the bytes to send:
	// for acks (Packet.SURB set) usually Client.ViaSURB and the payload
	// as is; for recipients, the layer above's mailbox address and its
	// envelope around the payload (which must fit in the client's
	// PayloadSize: size Config.PayloadSize accordingly). ok false drops
	// the packet (the queue's resends cover it) and sends cover.
	Route func(p Packet) (d client.Destination, payload []byte, ok bool)
}

var _ client.Source = Source{}

// Next implements client.Source.
func (s Source) Next(now time.Time) (client.Destination, []byte, bool) {
	p, ok := s.Queue.Next(now)
	if !ok {
		return client.Destination{}, nil, false
	}
	return s.Route(p)
}
