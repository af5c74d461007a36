// Package churn generates when peers come and go: session lengths,
// downtimes and lifetimes drawn from the distributions measured in P2P
// churn studies, per-node availability drawn around a class mean, and the
// alternating on/off process of each node.
//
// Everything is pure: randomness comes from a *rand.Rand the caller seeds,
// so a run is reproducible. The parameters and the studies they come from
// are in docs/simulation.md; in short:
//
//   - Session lengths are heavy-tailed: Weibull with shape 0.34-0.59 fits
//     Gnutella, BitTorrent and Kad (Stutzbach & Rejaie, "Understanding churn
//     in peer-to-peer networks", IMC 2006), and Kad session times are Weibull
//     too (Steiner, En-Najjary & Biersack, "Long term study of peer behavior
//     in the KAD DHT", IEEE/ACM ToN 2009). Exponential is kept as the
//     memoryless baseline most analyses assume.
//   - Availability differs widely between peers; Wuala designed for storage
//     peers online about a fifth of the time (D. Grolimund, Google Tech Talk,
//     2007). A class has a mean availability and a spread: each node draws its
//     own from a Beta distribution with that mean, and its downtimes are
//     scaled so that session/(session+downtime) equals it.
package churn
