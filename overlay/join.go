package overlay

import (
	"context"
	"errors"
	"fmt"
	"github.com/immense-p2p/immense/internal/hostname"
	"github.com/immense-p2p/immense/internal/netprefix"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	msmux "github.com/multiformats/go-multistream"
)

// The join protocol lets a node refuse newcomers with a clear answer
// instead of falling over when too many arrive at once (every peer
// restarting after an outage). doc.go describes it in full.

// joinBatch is how many bootstrap peers a newcomer asks at once. Two, as
// the DHT's own bootstrapping does: one is enough to join, two keep a
// restarting network from hanging off a single node, and asking every
// bootstrap node at once would multiply the load of a mass return by
// their number. Referrals are asked one at a time: they are many, alive
// (the referring node was connected to them a moment ago), and each
// admission costs one of them a token that another newcomer needs.
const joinBatch = 2

// shedLogInterval spaces the server's "shedding joins" log lines: one per
// interval, with the count since the last, rather than one per refusal.
const shedLogInterval = 10 * time.Second

// JoinStats counts join requests, as a server and as a newcomer.
type JoinStats struct {
	// Admitted and Busy count the join requests this node admitted and
	// refused.
	Admitted uint64 `json:"admitted"`
	Busy     uint64 `json:"busy"`
	// BusyReceived counts busy answers this node received while joining,
	// and Referred the times it then joined through a referral.
	BusyReceived uint64 `json:"busy_received"`
	Referred     uint64 `json:"referred"`
}

// JoinStats returns the join counters.
func (o *Overlay) JoinStats() JoinStats {
	return JoinStats{
		Admitted:     o.joinAdmitted.Load(),
		Busy:         o.joinBusy.Load(),
		BusyReceived: o.joinBusyReceived.Load(),
		Referred:     o.joinReferred.Load(),
	}
}

// JoinProtocol returns the protocol ID of the join protocol:
// /immense/join/1.0.0 under the default prefix.
func (o *Overlay) JoinProtocol() protocol.ID { return o.cfg.ProtocolPrefix + "/join/1.0.0" }

// enterHandler counts a stream handler in o.wg, which the caller then
// marks Done, unless the overlay is closed: then it resets st and reports
// false.
func (o *Overlay) enterHandler(st network.Stream) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		st.Reset()
		return false
	}
	o.wg.Add(1)
	return true
}

// shedLog aggregates the server's refusals into one log line per
// shedLogInterval.
type shedLog struct {
	mu     sync.Mutex
	last   time.Time
	count  int
	logged bool
}

// handleJoin serves one join request.
func (o *Overlay) handleJoin(st network.Stream) {
	if !o.enterHandler(st) {
		return
	}
	defer o.wg.Done()
	stop := context.AfterFunc(o.ctx, func() { st.Reset() })
	defer stop()

	from := st.Conn().RemotePeer()
	st.SetDeadline(time.Now().Add(o.cfg.JoinTimeout))
	body, err := readJoinFrame(st)
	var q joinMessage
	if err == nil {
		q, err = decodeJoin(body)
	}
	if err == nil && q.typ != joinRequest {
		err = fmt.Errorf("%w: type %d is not a request", errBadJoin, q.typ)
	}
	if err != nil {
		o.log.Debug("bad join request", "peer", from, "err", err)
		st.Reset()
		return
	}
	ok, retry := o.admission.admit(time.Now(), len(o.host.Network().Peers()))
	if ok {
		o.joinAdmitted.Add(1)
		o.log.Debug("admitted join", "peer", from)
		if err := writeJoinFrame(st, (&joinMessage{typ: joinOK}).encode()); err != nil {
			st.Reset()
			return
		}
		st.Close()
		return
	}
	refs := o.referrals(from, st.Conn().RemoteMultiaddr())
	o.joinBusy.Add(1)
	o.logShed(from, retry, len(refs))
	if err := writeJoinFrame(st, (&joinMessage{typ: joinBusy, retryAfter: retry, referrals: refs}).encode()); err == nil {
		// The newcomer closes its side once it has read the answer: wait
		// for that (or the deadline), so that closing the connection below
		// cannot cut the answer off.
		_ = st.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(st, maxJoinFrame))
	}
	st.Close()
	// The refused newcomer holds no connection here: that is the point.
	_ = o.host.Network().ClosePeer(from)
}

func (o *Overlay) logShed(from peer.ID, retry time.Duration, refs int) {
	o.shed.mu.Lock()
	defer o.shed.mu.Unlock()
	o.shed.count++
	o.log.Debug("shedding join", "peer", from, "retry_after", retry, "referrals", refs)
	now := time.Now()
	if o.shed.logged && now.Sub(o.shed.last) < shedLogInterval {
		return
	}
	o.log.Info("shedding joins: answering busy", "refused", o.shed.count, "since", shedLogInterval,
		"retry_after", retry.Round(time.Millisecond), "referrals", refs,
		"join_rate", o.cfg.JoinRate, "join_burst", o.cfg.JoinBurst, "connected_peers", len(o.host.Network().Peers()))
	o.shed.last, o.shed.count, o.shed.logged = now, 0, true
}

// referrals picks up to JoinReferrals DHT servers from the routing table to
// send a refused newcomer to: not the newcomer itself, connected peers
// first (they are alive), in random order so that a crowd of refused
// newcomers spreads over the network, each with only the addresses the
// newcomer can use (usableAddr, from the address it reached us on).
func (o *Overlay) referrals(to peer.ID, via multiaddr.Multiaddr) []peer.AddrInfo {
	if o.cfg.JoinReferrals == 0 {
		return nil
	}
	from := addrScope(via)
	ps := o.dht.RoutingTable().ListPeers()
	rand.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	var connected, others []peer.ID
	for _, p := range ps {
		if o.host.Network().Connectedness(p) == network.Connected {
			connected = append(connected, p)
		} else {
			others = append(others, p)
		}
	}
	var out []peer.AddrInfo
	for _, p := range append(connected, others...) {
		if len(out) == o.cfg.JoinReferrals {
			break
		}
		if p == to || p == o.host.ID() {
			continue
		}
		var addrs []multiaddr.Multiaddr
		for _, a := range o.host.Peerstore().Addrs(p) {
			if len(addrs) < maxReferralAddrs && usableAddr(a, from) {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			out = append(out, peer.AddrInfo{ID: p, Addrs: addrs})
		}
	}
	return out
}

// scope orders address reachability: an address is worth handing to a
// peer (or dialling on a peer's word) only if its scope is at least that of
// the path between the two. DialGate judges every dial by the same scopes.
type scope int

const (
	scopeNone      scope = iota // unroutable: never shared
	scopeLoopback               // 127.0.0.0/8, ::1, localhost names
	scopeLinkLocal              // 169.254.0.0/16 (a cloud's metadata service), fe80::/10
	scopePrivate                // RFC 1918, ULA, carrier-grade NAT, local-use NAT64
	scopePublic                 // the internet
)

func (s scope) String() string {
	switch s {
	case scopeLoopback:
		return "loopback"
	case scopeLinkLocal:
		return "link-local"
	case scopePrivate:
		return "private"
	case scopePublic:
		return "public"
	}
	return "unroutable"
}

// NAT64's local-use prefix, whose translation only its operator knows
// (RFC 8215) and which we take as private (the prefixes that carry an
// IPv4 address are netprefix.Carried's).
var (
	// metadataAddrs are clouds' instance metadata services outside the
	// link-local ranges (AWS's IPv6 one is a ULA, Alibaba's in the
	// carrier-grade NAT range, Azure's host endpoint a public address):
	// scoped link-local like 169.254.169.254, so that a VM on a cloud's
	// private network never dials them on a stranger's word.
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("fd00:ec2::254"),
		netip.MustParseAddr("100.100.100.200"),
		netip.MustParseAddr("168.63.129.16"),
	}
	nat64LocalPrefix = netip.MustParsePrefix("64:ff9b:1::/48")
)

// addrScope is the scope of a's IP address or DNS name. The multiaddr
// library's checks decide, with these corrections. An IPv6 address that
// carries an IPv4 one (IPv4-mapped or -compatible, NAT64, 6to4, Teredo)
// has the scope of that IPv4 address, where its packets go: the library
// calls /ip6/64:ff9b::c0a8:101 public, though a NAT64 gateway takes it to
// 192.168.1.1. Link-local addresses are a scope of their own, narrower
// than private: a node on a LAN must not dial a cloud's metadata service.
// Carrier-grade NAT (100.64.0.0/10) stays private, as RFC 6598 has it: it
// reaches the other customers behind the same carrier's NAT, or the
// machines of a VPN that uses it (Tailscale does), never the internet, and
// a node there that listens on its 100.64 address meets its peers there
// as on a LAN. Localhost names (RFC 6761) are loopback, where they
// resolve, not private.
func addrScope(a multiaddr.Multiaddr) scope {
	ip, err := manet.ToIP(a)
	if err != nil {
		if len(a) > 0 && isLocalhost(a[0]) {
			return scopeLoopback
		}
		if manet.IsPublicAddr(a) {
			return scopePublic
		}
		return scopeNone
	}
	addr, _ := netip.AddrFromSlice(ip)
	if addr.IsLoopback() {
		return scopeLoopback
	}
	if v4 := netprefix.Carried(addr); len(v4) > 0 {
		s := scopePublic
		for _, v := range v4 {
			m, _ := manet.FromIP(v.AsSlice()) // never fails on an IPv4 address
			s = min(s, addrScope(m))
		}
		return s
	}
	switch {
	case addr.IsLinkLocalUnicast(), slices.Contains(metadataAddrs, addr):
		return scopeLinkLocal
	case nat64LocalPrefix.Contains(addr):
		return scopePrivate
	case manet.IsPublicAddr(a):
		return scopePublic
	case manet.IsPrivateAddr(a):
		return scopePrivate
	}
	return scopeNone
}

// isLocalhost reports whether c is a DNS name for this machine:
// localhost or a name under it (RFC 6761).
func isLocalhost(c multiaddr.Component) bool {
	switch c.Code() {
	case multiaddr.P_DNS, multiaddr.P_DNS4, multiaddr.P_DNS6, multiaddr.P_DNSADDR:
		return hostname.IsLocalhost(c.Value())
	}
	return false
}

// usableAddr reports whether a is worth giving to, or dialling on the word
// of, a peer at scope from: a direct IP address (no relay circuit, nothing
// unspecified, no DNS name) at least as wide as from. A peer on the
// internet gets only public addresses, one on our LAN private ones too,
// one on our link (169.254.0.0/16) link-local ones too, one on loopback
// any. Besides saving useless dials, this keeps a server from pointing
// newcomers at their own LAN or loopback services, which a DNS name would
// do behind our back: whoever advertises /dns4/10.0.0.1.nip.io would have
// every newcomer it is referred to dial 10.0.0.1 on its own network.
func usableAddr(a multiaddr.Multiaddr, from scope) bool {
	if manet.IsIPUnspecified(a) || !manet.IsThinWaist(a) {
		return false
	}
	if _, err := a.ValueForProtocol(multiaddr.P_CIRCUIT); err == nil {
		return false
	}
	s := addrScope(a)
	return s != scopeNone && s >= from
}

// joinResult is one peer's answer to a join request.
type joinResult struct {
	id       peer.ID
	admitted bool
	busy     *joinMessage // the busy answer, if refused
	scope    scope        // of the address the peer was reached on
	err      error
}

// joinOutcome sums up a join round.
type joinOutcome struct {
	admitted   int           // peers that admitted us
	busy       int           // busy answers
	retryAfter time.Duration // the shortest retry-after among them
	tried      int           // referrals tried
	referred   peer.ID       // the referral that admitted us, if any
	lastErr    error         // why the last bootstrap peer that failed did
}

// joinRound asks the bootstrap peers, in random order and joinBatch at a
// time, to admit this node, until one does. If all refuse, it tries the
// peers they referred it to, one at a time, until one admits it.
// Referrals' own referrals are not followed, so one busy answer leads to a
// bounded number of dials.
func (o *Overlay) joinRound() joinOutcome {
	var out joinOutcome
	boot := make([]peer.AddrInfo, 0, len(o.cfg.Bootstrap))
	isBoot := make(map[peer.ID]bool, len(o.cfg.Bootstrap))
	for _, ai := range o.cfg.Bootstrap {
		if ai.ID != o.host.ID() && !isBoot[ai.ID] {
			boot = append(boot, ai)
			isBoot[ai.ID] = true
		}
	}
	rand.Shuffle(len(boot), func(i, j int) { boot[i], boot[j] = boot[j], boot[i] })
	var refs []peer.AddrInfo
	seen := map[peer.ID]bool{o.host.ID(): true}
	for b := range slices.Chunk(boot, joinBatch) {
		for _, r := range o.joinAll(b) {
			switch {
			case r.admitted:
				out.admitted++
			case r.busy != nil:
				out.busy++
				if out.retryAfter == 0 || r.busy.retryAfter < out.retryAfter {
					out.retryAfter = r.busy.retryAfter
				}
				for _, ai := range r.busy.referrals {
					if seen[ai.ID] || isBoot[ai.ID] {
						continue
					}
					seen[ai.ID] = true
					ai.Addrs = slices.DeleteFunc(slices.Clone(ai.Addrs), func(a multiaddr.Multiaddr) bool { return !usableAddr(a, r.scope) })
					if len(ai.Addrs) > 0 {
						refs = append(refs, ai)
					}
				}
			default:
				out.lastErr = r.err
				o.log.Debug("join through bootstrap peer failed", "peer", r.id, "err", r.err)
			}
		}
		if out.admitted > 0 {
			return out
		}
	}
	rand.Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })
	for b := range slices.Chunk(refs, 1) {
		out.tried += len(b)
		for _, r := range o.joinAll(b) {
			switch {
			case r.admitted:
				out.admitted++
				out.referred = r.id
			case r.busy != nil:
				out.busy++
			default:
				o.log.Debug("join through referral failed", "peer", r.id, "err", r.err)
			}
		}
		if out.admitted > 0 {
			o.joinReferred.Add(1)
			return out
		}
	}
	return out
}

// joinAll asks the given peers in parallel.
func (o *Overlay) joinAll(ais []peer.AddrInfo) []joinResult {
	res := make([]joinResult, len(ais))
	var wg sync.WaitGroup
	for i, ai := range ais {
		wg.Go(func() { res[i] = o.joinPeer(ai) })
	}
	wg.Wait()
	return res
}

// joinPeer dials ai and asks it to admit this node. A peer that refuses, or
// fails to answer, is disconnected and dropped from the routing table (which
// identify may already have put it in), so that the DHT does not dial it
// straight back.
func (o *Overlay) joinPeer(ai peer.AddrInfo) joinResult {
	r := joinResult{id: ai.ID}
	ctx, cancel := context.WithTimeout(o.ctx, o.cfg.DialTimeout)
	err := o.host.Connect(ctx, ai)
	cancel()
	if err != nil {
		r.err = fmt.Errorf("dial: %w", err)
		return r
	}
	m, sc, err := o.requestJoin(ai.ID)
	r.scope = sc
	switch {
	case err != nil:
		r.err = err
	case m.typ == joinOK:
		r.admitted = true
		o.avoided.admitted(ai.ID)
		return r
	default:
		o.joinBusyReceived.Add(1)
		r.busy = &m
		o.avoid(ai.ID, time.Now().Add(min(max(m.retryAfter, o.cfg.BootstrapBackoffMin), o.cfg.JoinRetryMax)))
		o.avoided.refusedBy(ai.ID)
		o.log.Debug("join refused: peer busy", "peer", ai.ID, "retry_after", m.retryAfter, "referrals", len(m.referrals))
	}
	_ = o.host.Network().ClosePeer(ai.ID)
	o.dht.RoutingTable().RemovePeer(ai.ID)
	return r
}

// requestJoin runs the client side of the join protocol with a connected
// peer. A peer that does not speak the protocol (an older version) counts as
// admitting us.
func (o *Overlay) requestJoin(p peer.ID) (joinMessage, scope, error) {
	ctx, cancel := context.WithTimeout(o.ctx, o.cfg.JoinTimeout)
	defer cancel()
	st, err := o.host.NewStream(ctx, p, o.JoinProtocol())
	if err != nil {
		if errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) {
			o.log.Debug("peer does not speak the join protocol: taken as admitted", "peer", p)
			return joinMessage{typ: joinOK}, scopeNone, nil
		}
		return joinMessage{}, scopeNone, fmt.Errorf("open join stream: %w", err)
	}
	sc := addrScope(st.Conn().RemoteMultiaddr())
	deadline, _ := ctx.Deadline()
	st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	if err := writeJoinFrame(st, (&joinMessage{typ: joinRequest}).encode()); err != nil {
		st.Reset()
		return joinMessage{}, sc, fmt.Errorf("send join request: %w", err)
	}
	// Our side stays open until we have the answer: a busy server waits
	// for our close before it drops the connection.
	body, err := readJoinFrame(st)
	if err != nil {
		st.Reset()
		return joinMessage{}, sc, fmt.Errorf("read join answer: %w", err)
	}
	st.Close()
	m, err := decodeJoin(body)
	if err != nil {
		return joinMessage{}, sc, err
	}
	if m.typ != joinOK && m.typ != joinBusy {
		return joinMessage{}, sc, fmt.Errorf("%w: type %d is not an answer", errBadJoin, m.typ)
	}
	return m, sc, nil
}

// avoidList holds the peers that answered busy, until the time they asked
// us to come back. The DHT neither adds them to the routing table nor
// queries them meanwhile (the filters in New): without that, the DHT's own
// check of a peer identify has just reported would dial a busy bootstrap
// node straight back, and a node that joined through a referral would
// still send its lookups to it.
//
// It also remembers, until they admit us or we are joined, the peers that
// refused us: being connected to one of them, with it in the routing
// table, is not being joined. The DHT can put a peer in the routing table
// after our busy answer (its check of the peer started on identify,
// before the answer, and adds it when done), and can dial it again once
// the retry-after has passed; without this the node would count itself
// joined through a peer that never admitted it.
type avoidList struct {
	mu      sync.Mutex
	until   map[peer.ID]time.Time
	refused map[peer.ID]bool
}

// maxRefused bounds the refusals remembered while joining: the bootstrap
// peers and the referrals asked, a few per round. Past it the oldest
// rounds' entries are forgotten (the set is emptied), which at worst lets
// the node count itself joined through one of them, as before.
const maxRefused = 256

func (a *avoidList) refusedBy(p peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refused == nil || len(a.refused) >= maxRefused {
		a.refused = make(map[peer.ID]bool)
	}
	a.refused[p] = true
}

func (a *avoidList) admitted(p peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.refused, p)
}

// joinedThrough reports whether one of ps has not refused us since we
// last joined, and forgets the refusals if so.
func (a *avoidList) joinedThrough(ps []peer.ID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range ps {
		if !a.refused[p] {
			a.refused = nil
			return true
		}
	}
	return false
}

// avoid records that p asked us to stay away until t.
func (o *Overlay) avoid(p peer.ID, t time.Time) {
	a := &o.avoided
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for q, u := range a.until {
		if !u.After(now) {
			delete(a.until, q)
		}
	}
	if a.until == nil {
		a.until = make(map[peer.ID]time.Time)
	}
	a.until[p] = t
}

// shunAvoided is a network notifiee: a connection this node opens to a
// peer that asked it to stay away (the DHT's check of a peer that identify
// reported a moment before the busy answer, which re-dials it) is closed
// again at once.
func (o *Overlay) shunAvoided() network.Notifiee {
	return &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		p := c.RemotePeer()
		if c.Stat().Direction != network.DirOutbound || !o.Avoiding(p) {
			return
		}
		// Not from the notification itself: closing there would stall
		// the swarm.
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.closed {
			return
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			_ = c.Close()
			o.dht.RoutingTable().RemovePeer(p)
		}()
	}}
}

// Avoiding reports whether p answered our join request busy and asked us
// to stay away, and that time has not passed yet. Nothing of ours should
// dial it meanwhile (node leaves it out of autorelay's candidates).
func (o *Overlay) Avoiding(p peer.ID) bool {
	a := &o.avoided
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.until[p]
	return ok && time.Now().Before(u)
}
