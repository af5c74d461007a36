//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNATTopology checks the test network itself with plain UDP sockets, so
// that a failure of the node tests below can be blamed on the node and not
// on the routers: each home is masqueraded behind its router's address with
// its port kept, nothing unsolicited gets in (to the home or to the router),
// an unsolicited packet that arrives first leaves no conntrack entry that
// would move the mapping, and two homes that send to each other at the
// same time get through both NATs (a hole punch).
func TestNATTopology(t *testing.T) {
	lab := newNATLab(t, 2)
	h1, h2 := lab.homes[0], lab.homes[1]

	// A rendezvous server on the internet, like a STUN server: it reports
	// the address it sees each packet come from.
	rv, err := lab.boot.listenUDP(bootIP + ":3478")
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	observe := func(c *net.UDPConn) *net.UDPAddr {
		t.Helper()
		if _, err := c.WriteToUDP([]byte("who am I"), &net.UDPAddr{IP: net.ParseIP(bootIP), Port: 3478}); err != nil {
			t.Fatal(err)
		}
		_, from := readUDP(t, rv, 5*time.Second)
		if from == nil {
			t.Fatal("rendezvous server received nothing")
		}
		return from
	}

	// Masquerade, port kept.
	s1, err := h1.lan.listenUDP(":5000")
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := h2.lan.listenUDP(":5000")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	m1, m2 := observe(s1), observe(s2)
	if m1.String() != h1.wanIP+":5000" || m2.String() != h2.wanIP+":5000" {
		t.Fatalf("mapped addresses %v and %v, want %s:5000 and %s:5000", m1, m2, h1.wanIP, h2.wanIP)
	}

	// Port-restricted filtering: another server sending to home1's mapped
	// port is dropped by the router, and home1 receives nothing even once a
	// packet it asked for has arrived behind it.
	stranger, err := lab.public.listenUDP(publicIP + ":9999")
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	dropped0, _ := lab.counter(h1.router, "filter", "wan_dropped")
	if _, err := stranger.WriteToUDP([]byte("unsolicited"), m1); err != nil {
		t.Fatal(err)
	}
	lab.waitCounter(h1.router, "filter", "wan_dropped", dropped0+1)
	if _, err := rv.WriteToUDP([]byte("answer"), m1); err != nil {
		t.Fatal(err)
	}
	if b, from := readUDP(t, s1, 5*time.Second); string(b) != "answer" {
		t.Fatalf("home1 received %q from %v, want only the rendezvous server's answer", b, from)
	}

	// An unsolicited packet to a port nobody inside has used yet is dropped
	// and pins nothing: home1's first packet from that port afterwards
	// still keeps its port.
	dropped0, _ = lab.counter(h1.router, "filter", "wan_dropped")
	if _, err := rv.WriteToUDP([]byte("early"), &net.UDPAddr{IP: net.ParseIP(h1.wanIP), Port: 5001}); err != nil {
		t.Fatal(err)
	}
	lab.waitCounter(h1.router, "filter", "wan_dropped", dropped0+1)
	if n := lab.conntrack(h1.router, "dport=5001"); len(n) != 0 {
		t.Fatalf("the dropped packet left conntrack entries: %q", n)
	}
	late, err := h1.lan.listenUDP(":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if m := observe(late); m.String() != h1.wanIP+":5001" {
		t.Fatalf("after an early unsolicited packet, home1's port 5001 maps to %v, want %s:5001", m, h1.wanIP)
	}

	// Hole punch: both homes send to each other's mapped address until
	// each has heard the other (the first packets are dropped by the far
	// router, whose own packet has not left yet).
	punch := func(self *net.UDPConn, peer *net.UDPAddr, got chan<- string) {
		buf := make([]byte, 64)
		for i := 0; i < 50; i++ {
			self.WriteToUDP([]byte("punch"), peer)
			self.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, from, err := self.ReadFromUDP(buf)
			if err == nil && string(buf[:n]) == "punch" {
				self.WriteToUDP([]byte("punch"), peer) // let the other side hear us too
				got <- from.String()
				return
			}
		}
		got <- ""
	}
	got1, got2 := make(chan string, 1), make(chan string, 1)
	go punch(s1, m2, got1)
	go punch(s2, m1, got2)
	if a, b := <-got1, <-got2; a != m2.String() || b != m1.String() {
		t.Fatalf("hole punch: home1 heard %q, home2 heard %q; want %v and %v", a, b, m2, m1)
	}
	if p, _ := lab.counter(lab.pub, "internet", "home1_to_home2"); p == 0 {
		t.Fatal("the internet counted no packet from home1 to home2")
	}
	lab.checkDirectFlows("udp")

	// The symmetric variant maps one socket to a different public port for
	// each destination, which is what defeats hole punching.
	lab.makeSymmetric(1)
	sym, err := h2.lan.listenUDP(":5002")
	if err != nil {
		t.Fatal(err)
	}
	defer sym.Close()
	toRV := observe(sym)
	if _, err := sym.WriteToUDP([]byte("who am I"), &net.UDPAddr{IP: net.ParseIP(publicIP), Port: 9999}); err != nil {
		t.Fatal(err)
	}
	_, toStranger := readUDP(t, stranger, 5*time.Second)
	if toStranger == nil || toRV.Port == toStranger.Port {
		t.Fatalf("symmetric NAT: one socket seen as %v and %v, want two different ports", toRV, toStranger)
	}
}

// checkDirectFlows checks that each home router holds a conntrack entry for
// a flow to the other home's public address that has seen packets both
// ways: the other side's packets came in through the mapping our own
// packets opened. Relayed traffic never makes such an entry, since it only
// ever goes to a server.
func (lab *natLab) checkDirectFlows(proto string) {
	lab.t.Helper()
	for i, h := range lab.homes {
		other := lab.homes[1-i].wanIP
		var replied []string
		for _, f := range lab.conntrack(h.router, proto, "dst="+other) {
			if !strings.Contains(f, "[UNREPLIED]") {
				replied = append(replied, f)
			}
		}
		if len(replied) == 0 {
			lab.t.Errorf("router %d has no %s flow to %s with replies; its table:\n%s", i+1, proto, other,
				strings.Join(lab.conntrack(h.router), "\n"))
		}
	}
}

// readUDP reads one datagram, or returns nil after timeout.
func readUDP(t *testing.T, c *net.UDPConn, timeout time.Duration) ([]byte, *net.UDPAddr) {
	t.Helper()
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil, nil
	}
	return bytes.Clone(buf[:n]), from
}

// waitCounter polls an nft counter until it reaches at least want packets:
// a packet sent on a veth is processed by the receiving namespace
// asynchronously.
func (lab *natLab) waitCounter(n netns, table, name string, want uint64) {
	lab.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, _ := lab.counter(n, table, name)
		if p >= want {
			return
		}
		if time.Now().After(deadline) {
			lab.t.Fatalf("%s: counter %s at %d packets, want %d", n.name, name, p, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// natNet is the overlay running on the lab: a bootstrap node and a public
// peer on the internet, and a volunteer peer in each home.
type natNet struct {
	lab       *natLab
	boot      *labNode
	public    *labNode
	homes     []*labNode
	bootAddrs string // --bootstrap value
	started   time.Time
}

// startNATNet starts the nodes and waits until all have joined. The public
// peer gets publicFlags; home peer i gets homeFlags(i) (e.g. "--volunteer").
func startNATNet(t *testing.T, lab *natLab, publicFlags []string, homeFlags func(i int) []string) *natNet {
	t.Helper()
	peerBin, bootBin := binaries(t)
	nn := &natNet{lab: lab, started: time.Now()}
	nn.boot = startNode(t, lab.boot, "bootstrap", bootBin,
		"--data-dir", t.TempDir(), "--listen", listenOn(bootIP, 4001), "--http", "127.0.0.1:0")
	nn.bootAddrs = strings.Join(nn.boot.info.Addrs, ",")
	nn.public = startNode(t, lab.public, "public-peer", peerBin, append([]string{
		"--data-dir", t.TempDir(), "--listen", listenOn(publicIP, 4001), "--http", "127.0.0.1:0",
		"--nat-portmap=false", "--bootstrap", nn.bootAddrs}, publicFlags...)...)
	for i, h := range lab.homes {
		args := append([]string{"--data-dir", t.TempDir(), "--listen", listenOn("0.0.0.0", 4001),
			"--http", "127.0.0.1:0", "--nat-portmap=false", "--bootstrap", nn.bootAddrs}, homeFlags(i)...)
		nn.homes = append(nn.homes, startNode(t, h.lan, fmt.Sprintf("home%d", i+1), peerBin, args...))
	}
	for _, n := range append([]*labNode{nn.public}, nn.homes...) {
		n.waitLog("joined overlay", 30*time.Second)
	}
	return nn
}

// listenOn is a --listen value for TCP and QUIC on one address and port.
func listenOn(ip string, port int) string {
	return fmt.Sprintf("/ip4/%s/tcp/%d,/ip4/%s/udp/%d/quic-v1", ip, port, ip, port)
}

// since reports the time since the network started, for the test log.
func (nn *natNet) since() string {
	return time.Since(nn.started).Round(100 * time.Millisecond).String()
}

// waitRelayed waits until AutoNAT has found the public peer reachable and
// the home peers unreachable, and the home peers hold relay reservations.
func (nn *natNet) waitRelayed(t *testing.T) {
	t.Helper()
	nn.public.waitStatus(`reachability "public"`, 60*time.Second, func(s natStatus) bool { return s.Reachability == "public" })
	t.Logf("%s: public peer found publicly reachable", nn.since())
	for _, h := range nn.homes {
		s := h.waitStatus(`reachability "private" and a relay address`, 90*time.Second, func(s natStatus) bool {
			return s.Reachability == "private" && len(s.RelayAddrs) > 0
		})
		t.Logf("%s: %s is private, reachable through %s", nn.since(), h.name, s.RelayAddrs)
		for _, a := range s.RelayAddrs {
			if !strings.Contains(a, "/p2p-circuit") {
				t.Errorf("%s: relay address %s is not a circuit address", h.name, a)
			}
		}
	}
}

// TestNATTraversal: two volunteers behind their own home NATs join the
// overlay, learn they are not reachable, become reachable through a relay,
// then, once they meet on a topic, connect to each other directly by hole
// punching; a message published by one reaches the other.
func TestNATTraversal(t *testing.T) {
	lab := newNATLab(t, 2)
	nn := startNATNet(t, lab, nil, func(int) []string { return []string{"--volunteer"} })
	nn.waitRelayed(t)
	h1, h2 := nn.homes[0], nn.homes[1]

	// Meeting on a topic makes them connect: each finds the other through
	// DHT rendezvous and dials its relay address; the receiving side then
	// starts a hole punch (DCUtR) over the relayed connection.
	const topic = "nat/chat"
	s1 := subscribeNS(t, h1, topic)
	s2 := subscribeNS(t, h2, topic)
	for i, h := range nn.homes {
		other, otherWAN := nn.homes[1-i], lab.homes[1-i].wanIP
		s := h.waitStatus("a direct connection to "+other.name, 60*time.Second, func(s natStatus) bool {
			for _, c := range s.Connections {
				if c.Peer == other.info.PeerID && !c.Relayed && !strings.Contains(c.Addr, "/p2p-circuit") {
					return true
				}
			}
			return false
		})
		for _, c := range s.Connections {
			if c.Peer != other.info.PeerID {
				continue
			}
			t.Logf("%s: %s connection to %s: %s (relayed %v)", nn.since(), h.name, other.name, c.Addr, c.Relayed)
			if !c.Relayed && !strings.HasPrefix(c.Addr, "/ip4/"+otherWAN+"/") {
				t.Errorf("%s: direct connection to %s goes to %s, want %s's public address %s", h.name, other.name, c.Addr, other.name, otherWAN)
			}
		}
	}
	// The routers agree: each has a flow to the other's public address
	// that carried packets both ways.
	lab.checkDirectFlows("")
	p12, b12 := lab.counter(lab.pub, "internet", "home1_to_home2")
	p21, b21 := lab.counter(lab.pub, "internet", "home2_to_home1")
	t.Logf("home-to-home traffic across the internet: %d packets/%d bytes one way, %d/%d the other", p12, b12, p21, b21)

	// No other node follows the topic, so messages can only travel over
	// the connection between the two homes.
	waitTopicPeersNS(t, h1, topic, 1)
	publishNS(t, h1, topic, "hello from behind NAT 1")
	expectNS(t, h2, s2, "hello from behind NAT 1")
	expectNS(t, h1, s1, "hello from behind NAT 1") // its own
	publishNS(t, h2, topic, "and back from NAT 2")
	expectNS(t, h1, s1, "and back from NAT 2")
	expectNS(t, h2, s2, "and back from NAT 2")
	logHolePunchMetrics(t, nn.homes)
}

// TestNATSymmetric: when one of the homes is behind a symmetric NAT, hole
// punching fails (its public port for the other home cannot be known in
// advance) and the two volunteers stay connected through the relay; a topic
// message still reaches the other home, through a subscriber on the
// internet.
func TestNATSymmetric(t *testing.T) {
	lab := newNATLab(t, 2)
	lab.makeSymmetric(1)
	nn := startNATNet(t, lab, nil, func(int) []string { return []string{"--volunteer"} })
	nn.waitRelayed(t)
	h1, h2 := nn.homes[0], nn.homes[1]

	const topic = "nat/chat"
	subscribeNS(t, nn.public, topic)
	s1 := subscribeNS(t, h1, topic)
	s2 := subscribeNS(t, h2, topic)
	// Meeting on the topic makes them connect through the relay and try a
	// hole punch; wait for libp2p to give up on it.
	deadline := time.Now().Add(90 * time.Second)
	for {
		failed := 0.0
		for _, h := range nn.homes {
			failed += metricSum(t, h, "libp2p_holepunch_outcomes_total", `outcome="failed"`)
		}
		if failed > 0 {
			break
		}
		if time.Now().After(deadline) {
			logHolePunchMetrics(t, nn.homes)
			t.Fatalf("no failed hole punch reported within 90 s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%s: hole punch failed, as it must through a symmetric NAT", nn.since())
	logHolePunchMetrics(t, nn.homes)
	for i, h := range nn.homes {
		other := nn.homes[1-i]
		st, err := h.status()
		if err != nil {
			t.Fatal(err)
		}
		relayed := false
		for _, c := range st.Connections {
			if c.Peer != other.info.PeerID {
				continue
			}
			if !c.Relayed || !strings.Contains(c.Addr, "/p2p-circuit") {
				t.Errorf("%s has a direct connection to %s (%s) through a symmetric NAT", h.name, other.name, c.Addr)
			}
			relayed = true
		}
		t.Logf("%s connected to %s through the relay: %v", h.name, other.name, relayed)
	}

	waitTopicPeersNS(t, h1, topic, 1)
	publishNS(t, h1, topic, "through the relay's neighbourhood")
	expectNS(t, h2, s2, "through the relay's neighbourhood")
	expectNS(t, h1, s1, "through the relay's neighbourhood")
}

// metricSum adds up the samples of a Prometheus metric on a node whose
// labels contain match.
func metricSum(t *testing.T, n *labNode, name, match string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := n.get(ctx, "/metrics")
	if err != nil {
		t.Fatalf("%s: /metrics: %v", n.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") || !strings.Contains(l, match) {
			continue
		}
		if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// logHolePunchMetrics puts libp2p's hole punching outcomes in the test log.
func logHolePunchMetrics(t *testing.T, nodes []*labNode) {
	t.Helper()
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := n.get(ctx, "/metrics")
		if err != nil {
			cancel()
			t.Errorf("%s: /metrics: %v", n.name, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "libp2p_holepunch_") && !strings.HasSuffix(l, " 0") {
				lines = append(lines, l)
			}
		}
		if len(lines) == 0 {
			lines = []string{"none"}
		}
		t.Logf("%s hole punching metrics:\n  %s", n.name, strings.Join(lines, "\n  "))
	}
}

// expectNS waits for the next message on a node's stream.
func expectNS(t *testing.T, n *labNode, s *sse, want string) {
	t.Helper()
	select {
	case got := <-s.events:
		if got != want {
			t.Fatalf("%s received %q, want %q", n.name, got, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no message %q within 30 s; logs:\n%s", n.name, want, n.dump())
	}
}

// subscribeNS opens a topic's SSE stream on a node in a namespace and
// returns once the node has subscribed.
func subscribeNS(t *testing.T, n *labNode, topic string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The stream lives until the test ends; only getting it open is
	// bounded.
	timer := time.AfterFunc(10*time.Second, cancel)
	resp, err := n.get(ctx, "/v1/topics/"+topic)
	timer.Stop()
	if err != nil {
		t.Fatalf("%s: subscribe: %v", n.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: subscribe: %s", n.name, resp.Status)
	}
	return readSSE(t, n.name, resp, cancel)
}

func publishNS(t *testing.T, n *labNode, topic, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", n.info.HTTP+"/v1/topics/"+topic, strings.NewReader(body))
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatalf("%s: publish: %v", n.name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%s: publish: %s", n.name, resp.Status)
	}
}

// waitTopicPeersNS waits until the node knows at least k other
// subscribers of topic.
func waitTopicPeersNS(t *testing.T, n *labNode, topic string, k int) {
	t.Helper()
	n.waitStatus(fmt.Sprintf("%d peers on topic %q", k, topic), 60*time.Second, func(s natStatus) bool {
		for _, tp := range s.Topics {
			if tp.Name == topic && tp.Peers >= k {
				return true
			}
		}
		return false
	})
}

// TestNATUploadCap: a volunteer with --max-upload keeps its uplink, as its
// home router counts it, within the cap (±20% over 10 s) while it has far
// more to send; the other volunteer, uncapped, sends the same load much
// faster, which shows the load does exceed the cap.
//
// The load is gossip: each home publishes 256 KiB messages at 2 MiB/s to a
// topic the public peer follows. The cap sits at the socket and covers every
// protocol alike; serving shards is tested the same way in TestNATState
// once the state API is available to processes.
func TestNATUploadCap(t *testing.T) {
	const (
		limit  = 768 << 10 // bytes per second; not the volunteer preset's 1 MiB/s
		msg    = 256 << 10
		demand = 2 << 20 // bytes per second offered by each home
		window = 10 * time.Second
	)
	lab := newNATLab(t, 2)
	nn := startNATNet(t, lab, nil, func(i int) []string {
		if i == 0 {
			return []string{"--volunteer", "--max-upload", "768KiB/s", "--log-level", "info"}
		}
		return []string{"--log-level", "info"} // default preset: no cap
	})
	capped, free := nn.homes[0], nn.homes[1]
	if s, err := capped.status(); err != nil || s.Bandwidth.MaxUpload != limit {
		t.Fatalf("%s status: bandwidth %+v, %v; want max_upload %d", capped.name, s.Bandwidth, err, limit)
	}

	const topic = "nat/load"
	subscribeNS(t, nn.public, topic)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Publishers: one message every msg/demand seconds, until the test
	// ends. Publish returns once gossipsub has queued the message; when a
	// queue is full gossipsub drops messages, which keeps the senders busy
	// without unbounded memory. The homes only publish (they do not
	// subscribe), so they do not forward each other's messages.
	var wg sync.WaitGroup
	published := make([]atomic.Int64, len(nn.homes))
	for i, h := range nn.homes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bytes.Repeat([]byte("x"), msg)
			tick := time.NewTicker(time.Second * msg / demand)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				req, _ := http.NewRequestWithContext(ctx, "POST", h.info.HTTP+"/v1/topics/"+topic, bytes.NewReader(body))
				if resp, err := h.http.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusAccepted {
						published[i].Add(1)
					}
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	for _, h := range nn.homes {
		waitTopicPeersNS(t, h, topic, 1) // the public peer, once the home has joined the topic
	}

	// Let the queues fill, then measure each router's uplink.
	time.Sleep(2 * time.Second)
	var tx0 [2]uint64
	for i, h := range lab.homes {
		_, tx0[i] = lab.linkBytes(h.router, "wan")
	}
	start := time.Now()
	time.Sleep(window)
	elapsed := time.Since(start).Seconds()
	var rate [2]float64
	for i, h := range lab.homes {
		_, tx := lab.linkBytes(h.router, "wan")
		rate[i] = float64(tx-tx0[i]) / elapsed
	}
	cancel()
	s, _ := capped.status()
	t.Logf("uplink over %.1f s as the routers count it: capped %s %.0f KiB/s (cap %d KiB/s, %.0f%%; the node reports %.0f KiB/s), uncapped %s %.0f KiB/s; offered %d KiB/s each (%d and %d messages accepted)",
		elapsed, capped.name, rate[0]/1024, limit>>10, 100*rate[0]/limit, s.Bandwidth.RateOut/1024, free.name, rate[1]/1024, demand>>10,
		published[0].Load(), published[1].Load())
	if rate[0] < 0.8*limit || rate[0] > 1.2*limit {
		t.Errorf("%s sent %.0f KiB/s, want %d KiB/s ±20%%", capped.name, rate[0]/1024, limit>>10)
	}
	if rate[1] < 1.5*limit {
		t.Errorf("uncapped %s sent only %.0f KiB/s: the load does not exceed the cap, so the test shows nothing", free.name, rate[1]/1024)
	}
}

// TestNATMassRestart: 50 volunteers in 25 homes (two machines behind each
// router), all killed at once (a power cut, or every client crashing as in
// Skype's 2007 outage) and all restarted at the same instant, rejoin within
// a bound, while the bootstrap node's CPU and memory stay bounded and it
// keeps answering. The bootstrap node admits only 2 newcomers a second
// (burst 5), so it sheds most of the wave with busy answers: the refused
// volunteers join through the two public peers it refers them to, or come
// back when it told them to. (Many machines behind one address are
// TestNATSharedAddress's subject.)
func TestNATMassRestart(t *testing.T) {
	const (
		peers       = 50
		homes       = 25
		rejoinBound = 60 * time.Second
		maxRSS      = 512 << 20 // bootstrap resident memory, bytes
		maxCPUShare = 1.0       // bootstrap CPU, cores on average while observed
		observe     = 20 * time.Second
	)
	lab := newNATLab(t, homes)
	peerBin, bootBin := binaries(t)
	boot := startNode(t, lab.boot, "bootstrap", bootBin,
		"--data-dir", t.TempDir(), "--listen", listenOn(bootIP, 4001), "--http", "127.0.0.1:0", "--log-level", "info",
		"--join-rate", "2", "--join-burst", "5")
	bootAddrs := strings.Join(boot.info.Addrs, ",")
	// Two always-on peers on the internet, DHT servers from the start:
	// the peers a busy bootstrap node refers newcomers to. Volunteers
	// behind NAT are DHT clients, which nobody could be referred to.
	var servers []*labNode
	for i, ns := range []netns{lab.public, lab.addServer("public2", "1.0.0.3")} {
		ip := []string{publicIP, "1.0.0.3"}[i]
		n := startNode(t, ns, fmt.Sprintf("public%d", i+1), peerBin,
			"--data-dir", t.TempDir(), "--listen", listenOn(ip, 4001), "--http", "127.0.0.1:0",
			"--nat-portmap=false", "--mode", "server", "--bootstrap", bootAddrs, "--log-level", "info")
		n.waitLog("joined overlay", 30*time.Second)
		servers = append(servers, n)
	}
	joins := func() (admitted, busy float64) {
		return metricSum(t, boot, "immense_overlay_joins_total", `result="admitted"`),
			metricSum(t, boot, "immense_overlay_joins_total", `result="busy"`)
	}
	dirs := make([]string, peers)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	// wave starts every peer at once and returns them once all have
	// joined, with each one's time from launch to joining.
	wave := func(label string) ([]*labNode, []time.Duration, time.Duration) {
		t.Helper()
		nodes := make([]*labNode, peers)
		infos := make([]string, peers)
		launched := time.Now()
		for i := range nodes {
			nodes[i], infos[i] = launch(t, lab.homes[i%homes].lan, fmt.Sprintf("%s-%d", label, i), peerBin,
				"--data-dir", dirs[i], "--volunteer", "--listen", listenOn("0.0.0.0", 0), "--http", "127.0.0.1:0",
				"--nat-portmap=false", "--bootstrap", bootAddrs, "--log-level", "info")
		}
		deadline := launched.Add(rejoinBound)
		took := make([]time.Duration, peers)
		for i, n := range nodes {
			if err := n.waitStarted(infos[i], deadline); err != nil {
				t.Fatal(err)
			}
			n.waitLog("joined overlay", time.Until(deadline))
			at, ok := n.logTime("joined overlay")
			if !ok {
				t.Fatalf("%s: joined log has no time", n.name)
			}
			took[i] = at.Sub(launched)
		}
		return nodes, took, time.Since(launched)
	}

	// referred counts the nodes that joined through a referral.
	referred := func(nodes []*labNode) int {
		k := 0
		for _, n := range nodes {
			if _, ok := n.logTime("bootstrap busy: joining through a referral"); ok {
				k++
			}
		}
		return k
	}
	adm0, busy0 := joins()
	first, took, all := wave("peer")
	adm1, busy1 := joins()
	since1 := time.Now()
	t.Logf("first start: %d peers joined within %v (%s); the bootstrap admitted %.0f and answered busy %.0f; %d joined through a referral",
		peers, all.Round(time.Millisecond), spread(took), adm1-adm0, busy1-busy0, referred(first))

	// The outage: every peer dies at once. Then all restart at the same
	// instant, with their identities, while a sampler watches the
	// bootstrap node's process.
	for _, n := range first {
		n.cmd.Process.Kill()
	}
	for _, n := range first {
		<-n.done
	}
	pid := boot.cmd.Process.Pid
	before := sampleProc(t, pid)
	stop := make(chan struct{})
	samples := make(chan []procSample, 1)
	go func() {
		var ss []procSample
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				samples <- ss
				return
			case <-tick.C:
				if s, err := readProc(pid); err == nil {
					ss = append(ss, s)
				}
			}
		}
	}()
	restarted := time.Now()
	second, took, all := wave("restarted")
	// Keep watching the bootstrap node for a while after everyone has
	// joined: AutoNAT probes (15 s after start) and relay reservations
	// (5 s) follow the join.
	time.Sleep(time.Until(restarted.Add(observe)))
	close(stop)
	ss := <-samples
	after := sampleProc(t, pid)

	st, err := boot.status()
	if err != nil {
		t.Fatalf("bootstrap status after the storm: %v", err)
	}
	adm2, busy2 := joins()
	window := time.Since(since1)
	cpu := after.cpu - before.cpu
	share := cpu.Seconds() / after.at.Sub(before.at).Seconds()
	var peakRSS int64
	var peakShare float64
	for i, s := range ss {
		peakRSS = max(peakRSS, s.rss)
		// CPU over ~1 s windows.
		for j := i + 1; j < len(ss); j++ {
			if d := ss[j].at.Sub(s.at); d >= time.Second {
				peakShare = max(peakShare, (ss[j].cpu-s.cpu).Seconds()/d.Seconds())
				break
			}
		}
	}
	peakRSS = max(peakRSS, after.rss)
	t.Logf("restart of %d peers at once: all rejoined within %v (%s); the bootstrap admitted %.0f and answered busy %.0f; %d joined through a referral",
		peers, all.Round(time.Millisecond), spread(took), adm2-adm1, busy2-busy1, referred(second))
	t.Logf("bootstrap in the %v after the restart: %.2f CPU s over %.1f s (%.0f%% of a core on average, %.0f%% at peak over 1 s); RSS %.0f MiB before, %.0f MiB peak, %.0f MiB after (high-water mark %.0f MiB); %d connected peers after",
		observe, cpu.Seconds(), after.at.Sub(before.at).Seconds(), 100*share, 100*peakShare,
		float64(before.rss)/(1<<20), float64(peakRSS)/(1<<20), float64(after.rss)/(1<<20), float64(after.hwm)/(1<<20), st.ConnectedPeers)
	if all > rejoinBound {
		t.Errorf("rejoin took %v, want at most %v", all, rejoinBound)
	}
	if peakRSS > maxRSS || after.hwm > maxRSS {
		t.Errorf("bootstrap memory peaked at %d MiB, want at most %d MiB", max(peakRSS, after.hwm)>>20, maxRSS>>20)
	}
	if share > maxCPUShare {
		t.Errorf("bootstrap used %.0f%% of a core on average after the restart, want at most %.0f%%", 100*share, 100*maxCPUShare)
	}
	for _, n := range servers {
		t.Logf("%s: admitted %.0f joins in all, answered busy %.0f", n.name,
			metricSum(t, n, "immense_overlay_joins_total", `result="admitted"`), metricSum(t, n, "immense_overlay_joins_total", `result="busy"`))
	}
	if busy2-busy1 == 0 {
		t.Error("the bootstrap node answered no join busy during the restart: the test shows no shedding")
	}
	if adm2-adm1 > 5+2*window.Seconds()+1 {
		t.Errorf("the bootstrap node admitted %.0f joins in %v, over its burst of 5 plus 2 a second", adm2-adm1, window.Round(time.Second))
	}
}

// procSample is a process's CPU time and memory at one instant.
type procSample struct {
	at       time.Time
	cpu      time.Duration // user + system
	rss, hwm int64         // bytes
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

func readProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("parse /proc/%d/stat: %v %v", pid, err1, err2)
	}
	s.cpu = time.Duration(ut+st) * clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &s.rss
		case "VmHWM":
			dst = &s.hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return s, fmt.Errorf("parse /proc/%d/status %s: %v", pid, k, err)
		}
		*dst = kb << 10
	}
	return s, nil
}

func sampleProc(t *testing.T, pid int) procSample {
	t.Helper()
	s, err := readProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// spread summarises durations: median, 95th percentile, maximum.
func spread(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))].Round(time.Millisecond) }
	return fmt.Sprintf("p50 %v, p95 %v, max %v", q(0.5), q(0.95), s[len(s)-1].Round(time.Millisecond))
}

// TestNATSharedAddress: a dozen volunteers behind one public address (a
// campus or carrier-grade NAT, or one big household) all join through the
// bootstrap node. libp2p's resource manager admits by default only 8
// connections per IPv4 address, which would turn the ninth away.
func TestNATSharedAddress(t *testing.T) {
	const peers = 12
	lab := newNATLab(t, 2)
	peerBin, bootBin := binaries(t)
	boot := startNode(t, lab.boot, "bootstrap", bootBin,
		"--data-dir", t.TempDir(), "--listen", listenOn(bootIP, 4001), "--http", "127.0.0.1:0", "--log-level", "info")
	bootAddrs := strings.Join(boot.info.Addrs, ",")
	nodes := make([]*labNode, peers)
	infos := make([]string, peers)
	for i := range nodes {
		nodes[i], infos[i] = launch(t, lab.homes[0].lan, fmt.Sprintf("peer-%d", i), peerBin,
			"--data-dir", t.TempDir(), "--volunteer", "--listen", listenOn("0.0.0.0", 0), "--http", "127.0.0.1:0",
			"--nat-portmap=false", "--bootstrap", bootAddrs, "--log-level", "info")
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, n := range nodes {
		if err := n.waitStarted(infos[i], deadline); err != nil {
			t.Fatal(err)
		}
		n.waitLog("joined overlay", time.Until(deadline))
	}
	if st, err := boot.status(); err != nil || st.ConnectedPeers < peers {
		t.Fatalf("bootstrap: %d connected peers (%v), want %d", st.ConnectedPeers, err, peers)
	}
}

// TestNATState: state whose shards all live on volunteers behind home NATs
// is read by a peer on the internet that has never met them, and a
// volunteer serving shards to it keeps its uplink within --max-upload.
//
// The writer is a public peer with the app key; the only other storage
// peers it knows are three volunteers, one per home, and it goes away after
// writing, so every shard left lives behind a NAT. The reader is another
// public peer with the same key, started after the write: it finds the
// holders through the DHT and reaches them through their relays, from where
// the volunteers dial it directly.
func TestNATState(t *testing.T) {
	const (
		limit  = 512 << 10 // each volunteer's upload cap, bytes per second
		window = 10 * time.Second
	)
	lab := newNATLab(t, 3)
	peerBin, _ := binaries(t)
	appKey := filepath.Join(t.TempDir(), "app.key")
	if out, err := exec.Command(peerBin, "keygen", "--out", appKey).CombinedOutput(); err != nil {
		t.Fatalf("peer keygen: %v: %s", err, out)
	}
	nn := startNATNet(t, lab, []string{"--app-key", appKey, "--log-level", "info"}, func(int) []string {
		return []string{"--volunteer", "--max-upload", "512KiB/s", "--log-level", "info"}
	})
	nn.waitRelayed(t)
	homeIDs := map[string]int{}
	for i, h := range nn.homes {
		homeIDs[h.info.PeerID] = i
	}
	nn.public.waitStatus("connections to every volunteer", 30*time.Second, func(s natStatus) bool {
		seen := map[string]bool{}
		for _, c := range s.Connections {
			if _, ok := homeIDs[c.Peer]; ok {
				seen[c.Peer] = true
			}
		}
		return len(seen) == len(homeIDs)
	})

	small := randomBytes(t, 300<<10)
	big := randomBytes(t, 4<<20)
	for key, v := range map[string][]byte{"nat-small": small, "nat-big": big} {
		res := putState(t, nn.public, key, v)
		if len(res.Holders) == 0 {
			t.Fatalf("put %s: no holders: %+v", key, res)
		}
		atHome := 0
		for _, h := range res.Holders {
			if _, ok := homeIDs[h]; ok {
				atHome++
			} else if h != nn.public.info.PeerID {
				t.Fatalf("put %s: holder %s is neither a volunteer nor the writer (holders %v)", key, h, res.Holders)
			}
		}
		if atHome < res.K {
			t.Fatalf("put %s: volunteers hold %d shards, fewer than k=%d (holders %v)", key, atHome, res.K, res.Holders)
		}
		t.Logf("%s: put %s (%d bytes): k=%d m=%d, %d of %d shards behind NATs", nn.since(), key, len(v), res.K, res.M, atHome, len(res.Holders))
	}
	// The writer goes away (it may hold a shard itself): what the reader
	// gets now can only come from behind the NATs.
	nn.public.kill()

	reader := startNode(t, lab.addServer("reader", "1.0.0.3"), "reader", peerBin,
		"--data-dir", t.TempDir(), "--listen", listenOn("1.0.0.3", 4001), "--http", "127.0.0.1:0",
		"--nat-portmap=false", "--bootstrap", nn.bootAddrs, "--app-key", appKey, "--log-level", "info")
	reader.waitLog("joined overlay", 30*time.Second)

	t.Run("fetch from behind NAT", func(t *testing.T) {
		tx0 := lab.wanTx()
		got := getState(t, reader, "nat-small")
		if !bytes.Equal(got, small) {
			t.Fatalf("reader got %d bytes, not the %d written", len(got), len(small))
		}
		var sent []string
		var total uint64
		for i, tx := range lab.wanTx() {
			sent = append(sent, fmt.Sprintf("home%d %d", i+1, tx-tx0[i]))
			total += tx - tx0[i]
		}
		t.Logf("%s: reader fetched %d bytes; the home routers sent %s bytes", nn.since(), len(got), strings.Join(sent, ", "))
		// The value is encrypted and encoded into shards, each at least
		// 1/k of it: with only volunteers holding shards, at least the
		// value's size must have crossed their routers.
		if total < uint64(len(small)) {
			t.Errorf("the home routers sent %d bytes in all, less than the %d-byte value: it did not come from behind the NATs", total, len(small))
		}
		st, err := reader.status()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.Connections {
			if i, ok := homeIDs[c.Peer]; ok {
				t.Logf("reader connection to home%d: %s (relayed %v)", i+1, c.Addr, c.Relayed)
			}
		}
	})

	t.Run("serving within upload cap", func(t *testing.T) {
		// Four readers' worth of demand: far above one volunteer's cap.
		// Once the window is over no read starts, and those under way
		// finish: every read must return the value intact.
		var stop atomic.Bool
		var wg sync.WaitGroup
		var reads atomic.Int64
		errs := make(chan error, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					resp, err := reader.get(ctx, "/v1/state/nat-big")
					if err != nil {
						cancel()
						errs <- err
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					cancel()
					if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(b, big) {
						errs <- fmt.Errorf("read: %s, %d bytes, %v: %.300s", resp.Status, len(b), err, b)
						return
					}
					reads.Add(1)
				}
			}()
		}
		time.Sleep(2 * time.Second)
		tx0 := lab.wanTx()
		start := time.Now()
		time.Sleep(window)
		tx1 := lab.wanTx()
		elapsed := time.Since(start).Seconds()
		stop.Store(true)
		busiest, rates := 0.0, []string{}
		for i := range tx1 {
			r := float64(tx1[i]-tx0[i]) / elapsed
			busiest = max(busiest, r)
			rates = append(rates, fmt.Sprintf("home%d %.0f KiB/s", i+1, r/1024))
			if r > 1.2*limit {
				t.Errorf("home%d sent %.0f KiB/s while serving shards, above its cap of %d KiB/s +20%%", i+1, r/1024, limit>>10)
			}
		}
		t.Logf("serving %d-byte reads, uplinks over %.1f s: %s; cap %d KiB/s each", len(big), elapsed, strings.Join(rates, ", "), limit>>10)
		if busiest < 0.8*limit {
			t.Errorf("the busiest volunteer sent only %.0f KiB/s: the readers did not load any volunteer up to its cap of %d KiB/s", busiest/1024, limit>>10)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		t.Logf("%d reads complete and intact", reads.Load())
	})
}

// wanTx returns each home router's uplink byte counter.
func (lab *natLab) wanTx() []uint64 {
	lab.t.Helper()
	tx := make([]uint64, len(lab.homes))
	for i, h := range lab.homes {
		_, tx[i] = lab.linkBytes(h.router, "wan")
	}
	return tx
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// putResult is the JSON answer to PUT /v1/state/{key}.
type putResult struct {
	Version uint64   `json:"version"`
	K       int      `json:"k"`
	M       int      `json:"m"`
	Holders []string `json:"holders"`
}

func putState(t *testing.T, n *labNode, key string, v []byte) putResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "PUT", n.info.HTTP+"/v1/state/"+key, bytes.NewReader(v))
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatalf("%s: put %s: %v", n.name, key, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: put %s: %s: %s", n.name, key, resp.Status, body)
	}
	var res putResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("%s: put %s: %v: %s", n.name, key, err, body)
	}
	return res
}

func getState(t *testing.T, n *labNode, key string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := n.get(ctx, "/v1/state/"+key)
	if err != nil {
		t.Fatalf("%s: get %s: %v", n.name, key, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: get %s: %s: %.3000s", n.name, key, resp.Status, body)
	}
	return body
}
