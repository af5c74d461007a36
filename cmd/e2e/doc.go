// Package e2e holds tests that build cmd/peer and cmd/bootstrap and run them
// as real OS processes on 127.0.0.1. It has no code of its own.
package e2e
