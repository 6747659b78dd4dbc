package node

import (
	"context"
	"errors"
	"testing"

	"github.com/strata-mix/strata/e2e"
	"github.com/strata-mix/strata/mailbox"
	"github.com/strata-mix/strata/sphinx"
)

// TestChatDeliverTooLarge checks that a payload larger than ChatMaxPayload
// is refused with ErrTooLarge before anything is queued.
func TestChatDeliverTooLarge(t *testing.T) {
	ch := &Chat{codec: mailbox.CodecFor(sphinx.DefaultGeometry())}
	big := make([]byte, ChatMaxPayload+1)
	err := (*chatTransport)(ch).Deliver(context.Background(), []e2e.Address{{}}, big)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}
