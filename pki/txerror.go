package pki

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/cometbft/cometbft/mempool"
)

// invalidTx matches the text of CometBFT's mempool.ErrInvalidTx, which is
// all an RPC client receives of a refusal.
var invalidTx = regexp.MustCompile(`is invalid: code=(\d+), data=[0-9A-F]*, log='(.*)', codespace='` + Codespace + `'`)

// asTxError turns a refusal that CometBFT's mempool reported as an error
// rather than as a CheckTx result (CometBFT v1 does so in BroadcastTxSync:
// in process a wrapped mempool.ErrInvalidTx, over RPC only its text) into
// the *TxError it stands for, so that CodeOf sees the code. Any other
// error is returned as it is.
func asTxError(err error) error {
	var te *TxError
	if err == nil || errors.As(err, &te) {
		return err
	}
	var inv mempool.ErrInvalidTx
	if errors.As(err, &inv) && inv.Codespace == Codespace {
		return &TxError{Code: Code(inv.Code), Msg: strings.TrimPrefix(inv.Log, "pki: ")}
	}
	if m := invalidTx.FindStringSubmatch(err.Error()); m != nil {
		if c, perr := strconv.ParseUint(m[1], 10, 32); perr == nil {
			return &TxError{Code: Code(c), Msg: m[2]}
		}
	}
	return err
}
