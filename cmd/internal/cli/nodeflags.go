package cli

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
)

// NodeFlags is the flag table of a node.Config, bound to c: one flag per
// field, each showing c's value as its default, so bind it to the preset
// the command runs. The storage flags are there only if c.State is set,
// the browser flags only if c.Browsers is: a preset without the part has
// nothing for them to set. Both commands use it; DataDir is theirs to
// bind, because its default is the command's, and TopicFlags only peer's.
func NodeFlags(c *node.Config) []Flag {
	t := []Flag{
		{"listen", "comma-separated libp2p listen `multiaddrs`", Strings(&c.ListenAddrs)},
		{"bootstrap", "bootstrap peers: comma-separated `multiaddrs` ending in /p2p/<peer id>", Strings(&c.Bootstrap)},
		{"dial-private", "dial the private (LAN) addresses other peers give even if no --listen or --bootstrap address is on a LAN, e.g. for peers that meet on a LAN but bootstrap by DNS name; without it, loopback and private addresses are dialled only where a --listen or --bootstrap address is", Bool(&c.DialPrivate)},

		{"max-conns", "hard cap on connections; lowers the inbound cap and --conn-high/--conn-low to fit unless they are given too", Int(&c.Limits.MaxConns)},
		{"max-inbound-conns", "hard cap on inbound connections", Int(&c.Limits.MaxInboundConns)},
		{"max-conns-per-ip", "connections from one IPv4 address or IPv6 /56 (loopback is not limited): bounds what one machine with many identities can open", Int(&c.Limits.MaxConnsPerIP)},
		{"http-max-conns", "connections the HTTP API (--http) holds open at once from other machines: WebSockets, SSE streams, keep-alive and half-sent requests; further ones get 503 and are closed (loopback has as many again of its own)", Int(&c.Limits.HTTPMaxConns)},
		{"http-max-conns-per-ip", "HTTP API connections from one IP address (IPv6: one /56; loopback is not limited); raise it behind a reverse proxy on another machine, whose address every client shares; raises --http-max-conns-per-net to fit unless that is given too", Int(&c.Limits.HTTPMaxConnsPerIP)},
		{"http-max-conns-per-net", "HTTP API connections from one public network (IPv4 /24, IPv6 /48; private addresses are limited per address only), at least --http-max-conns-per-ip", Int(&c.Limits.HTTPMaxConnsPerNet)},
		{"conn-low", "connection manager low water mark", Int(&c.Limits.ConnLowWater)},
		{"conn-high", "connection manager high water mark; joins through this node are refused above it", Int(&c.Limits.ConnHighWater)},
		{"max-memory", "memory libp2p may use, e.g. 512MiB", Size(&c.Limits.MaxMemory)},
		{"max-upload", "upload cap for all traffic, e.g. 2MiB/s (0: no cap)", Rate(&c.MaxUpload)},
		{"max-download", "download cap for all traffic, e.g. 8MiB/s (0: no cap)", Rate(&c.MaxDownload)},

		{"relay-service", "offer circuit relay v2 to NAT'd peers once publicly reachable", Bool(&c.NAT.RelayService)},
		{"max-relayed-conns", "relay reservations granted to other peers", Int(&c.NAT.MaxRelayedConns)},
		{"nat-portmap", "ask the router for a port mapping (UPnP/NAT-PMP)", Bool(&c.NAT.PortMap)},

		{"mode", "DHT `mode`: auto (server once publicly reachable, or from the start on loopback or a LAN: some --listen or --bootstrap address there and none public), server or client", Parsed(&c.Overlay.Mode, overlay.ParseMode, overlay.Mode.String)},
		{"join-rate", "newcomers admitted per second when they join through this node; the rest are told when to come back and referred to other peers (0: no limit)", Float(&c.Overlay.JoinRate)},
		{"join-burst", "newcomers admitted at once before --join-rate applies", Int(&c.Overlay.JoinBurst)},
		{"max-message-size", "largest topic message, e.g. 1MiB", Size(&c.Overlay.MaxMessageSize)},
	}
	t = append(t, overlayBudgetFlags(&c.Overlay)...)
	if c.State != nil {
		t = append(t,
			Flag{"no-state", "store no shards and offer no state API", Off(&c.State)},
			Flag{"storage-quota", "most shard bytes kept for others, e.g. 10GiB", Size(&c.StorageQuota)},
			Flag{"app-key", "app key `file` (peer keygen): read and write the app's state namespace, and publish to the app's topics, which this peer then authorizes (default: a key of this node's own, which authorizes nothing)", String(&c.AppKeyFile)},
			Flag{"zone", "failure-domain label (region, data centre); shards of an object are spread over zones", String(&c.State.Zone)},
			Flag{"handoff-timeout", "on SIGINT/SIGTERM, hand the shards this peer holds to other peers for at most this long before exiting (0: do not; a second signal cuts it short)", Duration(&c.State.HandoffTimeout)},
			Flag{"zones", "`file` of trusted failure domains, one \"<peer id> <zone>\" a line: only these zones (and --zone) spread shards, and their peers may share a /24; zones other peers declare are ignored", String(&c.State.ZonesFile)},
			Flag{"delegate-repair", "with --app-key: let the holders of the app's shards regenerate lost ones while this app's peers are offline, under a delegation this peer signs and renews, valid this long (e.g. 168h; 0: do not delegate)", Duration(&c.State.DelegateRepair)},
			Flag{"volunteer-repair-interval", "how often to repair, as a volunteer, the objects of other apps whose shards this peer holds and whose app delegates repair (0: never)", Duration(&c.State.VolunteerRepairInterval)},
			Flag{"durable-history", "topic `patterns` whose history this peer, with --app-key, also keeps in the app's state for 24 h (10,000 messages a topic), so that a resume from further back than the in-memory window recovers (comma-separated; a trailing * matches a prefix; default none)", Strings(&c.DurableHistory.Topics)},
		)
	}
	if b := c.Browsers; b != nil {
		t = append(t,
			Flag{"no-browsers", "turn the WebRTC bridge for browsers off", Off(&c.Browsers)},
			Flag{"token-secret-file", "secret that browser tokens are signed with (HS256; see: peer secret, peer token); without it, --app-key, --app-pub (which admit EdDSA tokens) or --insecure-no-auth, browsers are refused", secretFile{p: &b.Secret}},
			Flag{"insecure-no-auth", "accept browsers without a token: whoever reaches --http can read and write every topic (only from pages of this machine, --browser-allowed-origins, and hosts in --http-allowed-hosts)", Bool(&b.InsecureNoAuth)},
			Flag{"browser-allowed-origins", "origins of the pages that may connect browsers (comma-separated, e.g. https://app.example.org; default * with tokens: the token says what a browser may do)", Strings(&b.AllowedOrigins)},
			Flag{"browser-max-pending-per-address", "browser connections one address may have still connecting (0: no cap); raise it behind a reverse proxy, where every browser shares the proxy's address", Int(&b.MaxPendingPerClient)},
			Flag{"ice-server", "STUN/TURN server for browsers' ICE, e.g. stun:stun.example.org:3478 (repeatable)", iceServers{&b.ICEServers}},
			Flag{"webrtc-public-ip", "public IP to announce to browsers when behind 1:1 NAT (repeatable)", Strings(&b.PublicIPs)},
			Flag{"browser-relays", "let this peer ask browsers to relay a topic to other browsers once it feeds more than --browser-relay-direct-budget of them (only browsers whose app and user opted in; docs/browser-protocol.md section 8)", Bool(&b.Relay.Enabled)},
			Flag{"browser-relay-direct-budget", "browsers of one topic this peer feeds itself before it attaches further ones to browser relays", Int(&b.Relay.DirectBudget)},
			Flag{"browser-relay-max-children", "browsers one browser relay feeds at most (1-255)", Int(&b.Relay.MaxChildren)},
			Flag{"browser-relay-min-uptime", "how long a browser must have been connected and willing before it is asked to relay", Duration(&b.Relay.MinUptime)},
			Flag{"webrtc-ice-lite", "answer browsers as an ICE-lite endpoint (no ICE agent per browser) where they reach this peer directly: one public (or loopback) IPv4 address, or --webrtc-public-ip, and no --ice-server; else full ICE", Bool(&b.ICELite)},
			Flag{"webrtc-fanout-packet-rate", "data channel packets per second a topic's fan-out aims at: its rounds to k browsers are at least k / this apart (batched), so a busy topic costs less CPU per delivery for a little latency; a light topic is never held", Float(&b.FanoutPacketRate)},
			Flag{"webrtc-udp-ports", "UDP port `range` for browser connections: all of them share one socket, on the first free port of the range, e.g. 50000-50000 (default: any)", portRange{&b.UDPPortMin, &b.UDPPortMax}},
		)
	}
	return t
}

// TopicFlags is the flag table of a node that joins topics, bound to c:
// who may publish to them, and presence. A peer has them; a bootstrap
// node, which joins no topic and serves no topic API, does not.
func TopicFlags(c *node.Config) []Flag {
	return []Flag{
		{"app-pub", "app public key `files` (the app.key.pub peer keygen writes; comma-separated during a key rotation): refuse messages on the app's topics that no app peer or browser token authorized, and admit browsers with EdDSA tokens; for volunteers", Strings(&c.AppPubFiles)},
		{"open-topics", "topic `patterns` anyone may publish to unauthenticated, despite --app-key/--app-pub (comma-separated; a trailing * matches a prefix; default none)", Strings(&c.Overlay.Auth.OpenTopics)},
		{"require-bound-tokens", "refuse browser messages relayed with a bearer token: only tokens bound to the browser's key (peer token --bind-key; the JS client signs with it) may publish, so no peer that sees a token can reuse it", Bool(&c.Overlay.Auth.RequireBoundTokens)},
		{"presence", "topic `patterns` with presence: who follows them, for GET /v1/topics/{topic}/presence, browsers and Go (comma-separated; a trailing * matches a prefix; default none)", Strings(&c.Presence.Topics)},
	}
}

// overlayBudgetFlags are the overlay's budgets against what strangers can
// make a node keep or process (overlay.Config, whose fields' comments give
// the reasons for the defaults; docs/operating.md explains them).
func overlayBudgetFlags(o *overlay.Config) []Flag {
	b, d := &o.DHTBudget, &o.Diversity
	return []Flag{
		{"dht-max-bytes", "DHT records kept for others, in all (key and value bytes)", Size(&b.MaxBytes)},
		{"dht-max-records", "DHT records kept for others, in all", Int(&b.MaxRecords)},
		{"dht-peer-max-bytes", "DHT record bytes one peer may have stored here", Size(&b.PeerMaxBytes)},
		{"dht-peer-max-records", "DHT records one peer may have stored here", Int(&b.PeerMaxRecords)},
		{"dht-namespace-max-bytes", "DHT record bytes of one record namespace (state manifests, handoff hints, providers)", Size(&b.NamespaceMaxBytes)},
		{"dht-put-rate", "DHT PUT_VALUE and ADD_PROVIDER requests per peer and second (0: no limit)", Float(&b.PutRate)},
		{"dht-put-burst", "DHT puts one peer may send at once before --dht-put-rate applies", Int(&b.PutBurst)},
		{"rt-per-bucket-24", "routing-table peers of one /24 (IPv6: /48) in one bucket (0 with the others: no diversity filter)", Int(&d.PerCPL24)},
		{"rt-max-24", "routing-table peers of one /24 (IPv6: /48) in the whole table", Int(&d.Table24)},
		{"rt-per-bucket-16", "routing-table peers of one /16 in one bucket", Int(&d.PerCPL16)},
		{"rt-max-16", "routing-table peers of one /16 in the whole table", Int(&d.Table16)},
		{"gossip-peer-rate", "gossip messages per second one connected peer may hand us, duplicates included; the excess is dropped (0: no limit)", Float(&o.PeerMessageRate)},
		{"gossip-peer-burst", "gossip messages one peer may hand us at once", Int(&o.PeerMessageBurst)},
		{"gossip-topic-rate", "gossip messages per second of one topic let into validation, from all peers (0: no limit)", Float(&o.TopicMessageRate)},
		{"gossip-topic-burst", "gossip messages of one topic let in at once", Int(&o.TopicMessageBurst)},
		{"gossip-publisher-rate", "gossip messages per second of one publisher delivered and forwarded; over it its own are rejected and it loses score (0: no limit)", Float(&o.PublisherMessageRate)},
		{"gossip-publisher-burst", "gossip messages of one publisher at once", Int(&o.PublisherMessageBurst)},
	}
}

// fitConns is the one rule both commands apply to --max-conns: limits the
// preset sets above it are lowered to fit (the inbound cap and the high
// water mark to --max-conns, the low water mark to half the high water
// mark), unless they were given on the command line too, in which case
// they are kept and validated as given. Without it, --max-conns below a
// preset's inbound cap or high water mark could never pass validation.
// Likewise --http-max-conns-per-ip above the preset's
// --http-max-conns-per-net raises it to fit, so that raising the first
// for a reverse proxy on another machine is enough, as it was before
// there was a cap per network.
func fitConns(l *node.Limits, given map[string]bool) {
	if given["http-max-conns-per-ip"] && !given["http-max-conns-per-net"] {
		l.HTTPMaxConnsPerNet = max(l.HTTPMaxConnsPerNet, l.HTTPMaxConnsPerIP)
	}
	if !given["max-conns"] {
		return
	}
	if !given["max-inbound-conns"] {
		l.MaxInboundConns = min(l.MaxInboundConns, l.MaxConns)
	}
	if !given["conn-high"] {
		l.ConnHighWater = min(l.ConnHighWater, l.MaxConns)
	}
	if !given["conn-low"] {
		l.ConnLowWater = min(l.ConnLowWater, l.ConnHighWater/2)
	}
}

// secretFile reads the browser token secret from the file named on the
// command line. The file name is all it shows: never the secret.
type secretFile struct {
	p    *[]byte
	path string
}

func (v secretFile) arg() string { return "file" }

func (v secretFile) String() string { return v.path }

func (v secretFile) Set(path string) error {
	s, err := LoadTokenSecret(path)
	if err != nil {
		return err
	}
	*v.p = s
	return nil
}

// LoadTokenSecret reads a token secret (webrtc.LoadSecret), refusing an
// app key or its public half given by mistake: a JSON file would be taken
// as a secret, and tokens signed with it would verify nowhere.
func LoadTokenSecret(path string) ([]byte, error) {
	s, err := webrtc.LoadSecret(path)
	if err != nil {
		return nil, err
	}
	if _, err := erasure.ParseAppKey(s); err == nil {
		return nil, fmt.Errorf("%s is an app key (peer keygen), not a token secret: give it as --app-key for EdDSA tokens, or make a secret with peer secret", path)
	}
	if bytes.HasPrefix(s, []byte("{")) {
		return nil, fmt.Errorf("%s holds JSON (an app key's public half?), not a token secret (peer secret writes one)", path)
	}
	return s, nil
}

// iceServers adds one ICE server per comma-separated URL.
type iceServers struct{ p *[]webrtc.ICEServer }

func (v iceServers) arg() string { return "url" }

func (v iceServers) String() string {
	if v.p == nil {
		return ""
	}
	var urls []string
	for _, s := range *v.p {
		urls = append(urls, s.URLs...)
	}
	return strings.Join(urls, ",")
}

func (v iceServers) Set(s string) error {
	for _, u := range splitList(s) {
		*v.p = append(*v.p, webrtc.ICEServer{URLs: []string{u}})
	}
	return nil
}

// portRange sets both ends of a UDP port range from "MIN-MAX".
type portRange struct{ lo, hi *uint16 }

func (v portRange) String() string {
	if v.lo == nil || (*v.lo == 0 && *v.hi == 0) {
		return ""
	}
	return fmt.Sprintf("%d-%d", *v.lo, *v.hi)
}

func (v portRange) Set(s string) error {
	var lo, hi uint16
	if s == "" { // any port, as the preset has it
		*v.lo, *v.hi = 0, 0
		return nil
	}
	if _, err := fmt.Sscanf(s, "%d-%d", &lo, &hi); err != nil || lo == 0 || hi < lo {
		return fmt.Errorf("%q: want MIN-MAX, e.g. 50000-50999", s)
	}
	*v.lo, *v.hi = lo, hi
	return nil
}
