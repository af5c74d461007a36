// Package connlimit holds how many peers a node keeps connected: the
// connection manager's high-water mark of each node preset that the
// simulator models. Above it the manager trims a node down to its
// low-water mark, and DHT and gossip traffic fill it up again within
// seconds, so it is also how many peers a busy node is connected to, and
// how far its flood publish reaches.
//
// node's presets take the numbers from here, and so does sim/model: a
// leaf package, so that the model does not pull in node and with it every
// transport (QUIC, TCP, WebRTC's pion).
package connlimit

const (
	// ServerHighWater is node.DefaultConfig's, the preset of servers.
	ServerHighWater = 400
	// VolunteerHighWater is node.VolunteerConfig's, the preset of a
	// volunteer's own machine.
	VolunteerHighWater = 96
)
