// Package live runs a scenario on real nodes: every peer is a node.Node
// (libp2p host, Kademlia DHT, gossipsub, exactly as cmd/peer runs them) in
// this process, connected through go-libp2p's simulated network
// (x/simlibp2p + simnet: real QUIC over links with the scenario's latency
// and bandwidth). The scenario's churn starts and stops nodes: a node going
// offline is closed, one coming back is started again from its data
// directory (same identity, same address), and one leaving for good is
// replaced by a newcomer with a fresh identity.
//
// While the nodes run, the driver publishes on a topic every node
// subscribes to and runs DHT lookups, and measures:
//
//   - delivery ratio and publish→deliver latency, counting for each message
//     the subscribers that were online and settled (up for Topic.Settle) at
//     publish time and still online at the deadline;
//   - lookup success and hop count: a random online node looks up the key
//     of another online node (kad-dht GetClosestPeers); the lookup succeeds
//     if that node is in the result, and the hop count is the depth at
//     which the lookup first heard of it, from the DHT's query events
//     (1 = it was in the initiator's own routing table).
//
// # Clock
//
// The driver only uses time.Now, timers and sleeps, so it runs the same in
// real time (the `sim run` command: a 200-node run takes its scenario's
// warm-up plus duration of wall time) and inside a testing/synctest bubble,
// where time is virtual (the package's tests). synctest cannot be used
// outside `go test` (synctest.Test needs a *testing.T, and Go 1.26 has no
// other entry point), which is why the command runs in real time; node
// timers that matter here (gossipsub heartbeat) come from the scenario.
//
// # Storage
//
// Object retrievability and repair traffic need erasure's Put and Get on
// the node, which node does not offer yet. Options.Storage is the hook for
// them; while it is nil the storage figures are reported as null, with a
// note, never as numbers.
package live
