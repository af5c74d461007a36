// Package model is the discrete-event model for networks too large to run:
// 10^4 to 10^6 peers over simulated months, in virtual time, on one core.
//
// It simulates the population (package churn: heavy-tailed sessions,
// uneven availability, permanent departures, mass events), and on top of
// it three things:
//
//   - Storage. Objects are placed, given parity and repaired by calling
//     erasure's own policy code, with the same inputs the service gives it:
//     erasure.Place and erasure.ChooseParity when an object is written,
//     erasure.RepairScheduler (jitter, rate limits) to pace checks,
//     erasure.PlanRepair to decide each repair, and one
//     erasure.AvailabilityTracker per app server fed with what that server's
//     requests observe. Nothing of the policy is re-implemented here; the
//     model only supplies the world the policy sees (who is online, which
//     peers a DHT lookup and the server's connections offer as candidates)
//     and counts the bytes repairs move. An object is lost when fewer than k
//     of its shards remain on peers that will ever come back.
//   - Topic fan-out. A message spreads over a random gossipsub mesh of
//     degree D among the online subscribers (eager push, each hop costing
//     link latency, transmission time and a per-hop processing cost
//     calibrated from live mode), and reaches peers the mesh misses through
//     gossip (IHAVE at the sender's next heartbeats, IWANT, then the
//     message).
//   - DHT lookups. An iterative Kademlia lookup (kad-dht's bucket size 20,
//     concurrency 10, resiliency 3) over routing tables drawn from the peers
//     online at the last refresh, stale entries included, measuring success
//     and hop count the way live mode does.
//
// A scenario with a celebrity section is run by RunCelebrity instead
// (celebrity.go): one post to millions of browsers over the peers, spread
// between peers by the fan-out model and from each peer to its followers
// directly or through browser relay trees, the followers aggregated into an
// arrival histogram (docs/simulation.md, "A celebrity post").
//
// The same seed gives the same summary.json: every random choice comes from
// seeded generators and every event is ordered by time, then by the order
// it was scheduled.
package model
