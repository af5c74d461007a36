// Package e2e holds tests that build cmd/peer and cmd/bootstrap and run them
// as real OS processes: on 127.0.0.1, and (nat_test.go, as root) in network
// namespaces the tests create, with home routers doing NAT in between. It
// has no code of its own.
package e2e
