// Package node wires Strata's components into running nodes: it reads a
// role's config file, opens its stores and keys, starts the transport, the
// role's component (relay, mailbox, validator, client) and the metrics
// endpoint, and stops them in order. It holds no protocol logic; the
// packages it wires must not import it.
package node
