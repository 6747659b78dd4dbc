// Package testvec is what the wire test vectors of the protocol packages
// (sphinx, client, queue, mailbox, pki) share: a byte string that JSON
// carries as hex, and reading a package's testdata/vectors.json, first
// rewriting it from the code when the package's -update flag is set.
//
// Only tests import it; it must not import any Strata package.
package testvec
