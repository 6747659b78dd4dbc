package pki

import (
	"errors"
	"fmt"
)

// Code is the result code of a PKI transaction, as CheckTx and FinalizeBlock
// report it (abci ExecTxResult.Code, codespace "strata-pki"). Each reason a
// transaction is refused has its own code so that a node can tell "try
// again next epoch" from "this will never work".
type Code uint32

// The transaction result codes. Their numbers are part of the chain's
// consensus rules and never change meaning.
const (
	CodeOK                Code = 0
	CodeMalformed         Code = 1  // the bytes do not decode (see docs/pki.md)
	CodeBadSignature      Code = 2  // unsigned, or signed by another key or for another chain
	CodeReplayed          Code = 3  // the same signed body was already applied
	CodeStaleEpoch        Code = 4  // signed for an epoch that is over
	CodeFutureEpoch       Code = 5  // signed for an epoch that has not begun
	CodeInsufficientWork  Code = 6  // intention's proof of work too weak
	CodeAlreadyRegistered Code = 7  // intention from a node that is registered
	CodeUnknownNode       Code = 8  // signer or subject is not registered
	CodeNotValidator      Code = 9  // attestation from a key outside the validator set
	CodeNotAdmitted       Code = 10 // VRF from a relay not yet admitted
	CodeWrongRole         Code = 11 // VRF from a mailbox, or an unknown role
	CodeWrongBeacon       Code = 12 // VRF on a beacon other than the current epoch's
	CodeBadVRF            Code = 13 // the ECVRF proof does not verify
	CodeDuplicateVRF      Code = 14 // the relay already submitted its VRF this epoch
	CodeKeyEpoch          Code = 15 // mix key for an epoch outside the publication window
	CodeKeyConflict       Code = 16 // a different mix key is already published for that epoch
	CodeBadKey            Code = 17 // a mix key of small order (sphinx.PublicKey.Validate)
	CodeBadAddress        Code = 18 // a libp2p address that does not parse or names a peer
	CodeNoBeacon          Code = 19 // no epoch has opened yet, so there is no beacon
	CodeInternal          Code = 20 // the application failed; the node logs why
	CodePendingFull       Code = 21 // intention in an epoch that has accepted MaxPendingPerEpoch
	CodeLateVRF           Code = 22 // VRF after the next epoch's topology froze: it can change nothing
)

var codeNames = [...]string{
	CodeOK:                "ok",
	CodeMalformed:         "malformed transaction",
	CodeBadSignature:      "bad signature",
	CodeReplayed:          "replayed transaction",
	CodeStaleEpoch:        "stale epoch",
	CodeFutureEpoch:       "future epoch",
	CodeInsufficientWork:  "insufficient proof of work",
	CodeAlreadyRegistered: "node already registered",
	CodeUnknownNode:       "unknown node",
	CodeNotValidator:      "not a validator",
	CodeNotAdmitted:       "node not admitted",
	CodeWrongRole:         "wrong role",
	CodeWrongBeacon:       "wrong beacon",
	CodeBadVRF:            "bad VRF proof",
	CodeDuplicateVRF:      "duplicate VRF",
	CodeKeyEpoch:          "mix key epoch out of range",
	CodeKeyConflict:       "conflicting mix key",
	CodeBadKey:            "bad mix key",
	CodeBadAddress:        "bad address",
	CodeNoBeacon:          "no beacon yet",
	CodeInternal:          "internal error",
	CodePendingFull:       "admission full this epoch",
	CodeLateVRF:           "VRF after the freeze",
}

// String names the code.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", uint32(c))
}

// Codespace is the ABCI codespace of every code.
const Codespace = "strata-pki"

// ErrTx is wrapped by every *TxError.
var ErrTx = errors.New("pki: transaction rejected")

// TxError is why the state machine refused a transaction: its code and a
// message for the log of the node that sent it.
type TxError struct {
	Code Code
	Msg  string
}

func (e *TxError) Error() string { return fmt.Sprintf("pki: %v: %s", e.Code, e.Msg) }

// Is makes errors.Is(err, ErrTx) true, and matches another *TxError with the
// same code.
func (e *TxError) Is(target error) bool {
	if target == ErrTx {
		return true
	}
	t, ok := target.(*TxError)
	return ok && t.Code == e.Code
}

func reject(c Code, format string, args ...any) *TxError {
	return &TxError{Code: c, Msg: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err: CodeOK for nil, the TxError's code, or
// CodeInternal.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var te *TxError
	if errors.As(err, &te) {
		return te.Code
	}
	return CodeInternal
}
