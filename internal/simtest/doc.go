// Package simtest runs many libp2p hosts in one process on go-libp2p's
// simulated network (x/simlibp2p over simnet: real QUIC, the only
// transport, over links with a set bandwidth and latency). Inside a
// testing/synctest bubble they run in virtual time: a minute of DHT
// refreshes or repair takes milliseconds, and nothing depends on the
// machine's load.
//
// It works at the host level, so every layer uses it without importing
// upwards: overlay and erasure tests build their services on bare hosts
// (Hosts), node tests and sim/live give node.Config the network's
// HostOptions and Addr(i) and let node build the host.
//
// Host i always listens on Addr(i), a public IPv4 address simnet derives
// from i: every host is publicly reachable, so there is no NAT traversal to
// set up, and a host stopped and started again comes back where it was,
// with the same identity, as a restarted process would.
//
// Tests call New and NewHosts, which close everything through
// tb.Cleanup. sim/live, which also runs outside tests on the real clock,
// calls Start and closes the network itself; it needs no testing.TB, since
// it starts nodes, not bare hosts.
package simtest
