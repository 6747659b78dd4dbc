// Package client is Strata's mix client (seed layers 2b and 2c): it picks
// routes through the strata, builds packets and SURBs, runs the Loopix
// payload, loop and drop streams over its home-relay connection, and keeps
// the SURB unwinding database that opens replies.
//
// So far it holds the SURB unwinding database (surbdb.go). It may import
// sphinx, transport and pki; it must not import relay, queue, mailbox or
// e2e (those sit above it).
package client
