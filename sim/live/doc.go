// Package live runs a scenario on real nodes: every peer is a node.Node
// (libp2p host, Kademlia DHT, gossipsub, erasure-coded storage, exactly as
// cmd/peer runs them) in this process, connected through go-libp2p's
// simulated network (x/simlibp2p + simnet: real QUIC over links with the
// scenario's latency and bandwidth), built by internal/simtest as the
// many-node tests build theirs. The scenario's churn starts and stops
// nodes: a node going offline is closed, one coming back is started again
// from its data directory (same identity, shards and address), and one
// leaving for good is replaced by a newcomer with a fresh identity.
//
// While the nodes run, the driver publishes on a topic every node
// subscribes to, runs DHT lookups, stores objects and reads them back, and
// measures:
//
//   - delivery ratio and publish→deliver latency, counting for each message
//     the subscribers that were online and settled (up for Topic.Settle) at
//     publish time and still online at the deadline, and which of them got
//     it straight from the publisher (gossipsub's flood publish);
//   - lookup success and hop count: a random online node looks up the key
//     of another online node (kad-dht GetClosestPeers); the lookup succeeds
//     if that node is in the result, and the hop count is the depth at
//     which the lookup first heard of it, from the DHT's query events
//     (1 = it was in the initiator's own routing table);
//   - objects (when the scenario's storage section has objects): see below.
//
// # Storage
//
// The servers share one app key (derived from the seed) and every node
// runs erasure's service with the scenario's policy, so shards go to
// volunteers and servers alike, as erasure places them. After the warm-up
// the servers write the objects with node.Put (in turn; a failed Put is
// tried again by the next server). At every sample each written object is
// read with node.Get by a random online server: the driver first reads the
// object's manifest from the DHT (its placement says which nodes hold which
// shard), then the object, and compares it with what was written. Once the
// run is over, a read counts as "available" if at least k of the holders
// that placement names were online from its start to its end (from the
// nodes' recorded online intervals, per identity), and the figures are:
//
//   - retrievability: successful reads / reads;
//   - retrievability_when_available (details): successful reads / available
//     reads, which the acceptance asks to be 1;
//   - object_available_share (details): available reads / reads, the
//     model's definition of retrievability, for comparison;
//   - objects_lost: after the measured window every node still in the
//     network (not replaced) is started again and, once they have joined,
//     every object is read (up to three tries); an object that cannot be
//     read then is lost. objects_lost_placement (details) is the model's
//     definition: fewer than k of the newest placement's holders left in
//     the network;
//   - repair_bytes_per_node_per_day: erasure's immense_state_repair_bytes_total
//     (regenerated shards stored on new holders), summed over every node
//     incarnation, from the start to the end of the measured window, per
//     node and per (compressed) day.
//
// # Clock
//
// The driver only uses time.Now, timers and sleeps, so it runs the same in
// real time and inside a testing/synctest bubble, where time is virtual.
// synctest.Test needs a *testing.T (Go 1.26 has no other entry point), so
// `sim run` runs live scenarios through this package's test binary
// (TestRunScenario) unless told to use the real clock.
package live
