//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The NAT tests build a small internet out of network namespaces:
//
//	  ns "boot" eth0: 1.0.0.1/24      ns "public" eth0: 1.0.0.2/24     (servers)
//	              \                       /
//	            ns "pub": the internet; bridge srv: 1.0.0.254/24; forwards,
//	                      filters nothing
//	           isp1: 1.0.1.1/24                 isp2: 1.0.2.1/24
//	                 |                                |
//	ns "rt1"  wan: 1.0.1.2/24               ns "rt2"  wan: 1.0.2.2/24
//	 (home    lan: 192.168.1.1/24            (home    lan: 192.168.2.1/24
//	 router)         |                        router)        |
//	ns "home1" eth0: 192.168.1.2/24          ns "home2" eth0: 192.168.2.2/24
//
// The routers load testdata/home-router.nft, the internet
// testdata/internet.nft. Each server is its own namespace, as it is its own
// machine: two nodes in one namespace would talk over loopback with the
// destination address as their source, and AutoNAT refuses to dial back an
// address it believes is its own.
//
// The "public" addresses are ones libp2p treats as public
// (manet.IsPublicAddr, as in go-libp2p's own tests): AutoNAT, relays and
// hole punching ignore private and documentation ranges. They exist only
// inside these namespaces, which have no link to the host's network, so no
// packet can leave the machine. Namespace names carry the test binary's PID;
// everything is removed in t.Cleanup, and namespaces left behind by a test
// binary that died are removed by the next run.

const (
	nsPrefix = "immnat" // + PID + "-" + sequence + "-" + role

	bootIP   = "1.0.0.1"
	publicIP = "1.0.0.2"
)

var nsSeq atomic.Int32

// netns is a network namespace created by ip netns add.
type netns struct{ name string }

// do runs fn on an OS thread switched into the namespace. Sockets that fn
// creates stay in the namespace and can be used from any goroutine
// afterwards. fn must not start goroutines that create sockets.
func (n netns) do(fn func() error) error {
	target, err := os.Open("/run/netns/" + n.name)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		ferr := fn()
		if err := setns(self); err != nil {
			// Leave the thread locked: the runtime ends it with this
			// goroutine instead of reusing it in the wrong namespace.
			errc <- fmt.Errorf("setns back from %s: %w", n.name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// dial opens a TCP connection from inside the namespace.
func (n netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// client returns an HTTP client whose connections start inside the
// namespace, to reach the HTTP API of a node listening on 127.0.0.1 there.
func (n netns) client() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: n.dial, MaxIdleConnsPerHost: 4}}
}

// listenUDP opens a UDP socket inside the namespace.
func (n netns) listenUDP(addr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := n.do(func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", ua)
		return err
	})
	return c, err
}

// sysctl sets a /proc/sys value inside the namespace.
func (n netns) sysctl(key, value string) error {
	return n.do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	})
}

// cmd returns a command that runs argv inside the namespace.
func (n netns) cmd(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name}, argv...)...)
}

// run runs a command with a deadline and returns its output.
func run(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// needNetns skips the test unless it can build namespaces: root, ip and nft.
// With IMMENSE_REQUIRE_NETNS=1 (CI), a missing requirement fails the test
// instead, so a CI machine that lost a package cannot pass by skipping.
func needNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds network namespaces and runs processes")
	}
	skip := t.Skipf
	if os.Getenv("IMMENSE_REQUIRE_NETNS") == "1" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("NAT tests need root to create network namespaces (run as root, as .ci/run does)")
		return
	}
	for _, tool := range []struct{ bin, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			skip("NAT tests need %s: apt-get install %s", tool.bin, tool.pkg)
			return
		}
	}
	sweepOnce.Do(sweepStale)
	probe := netns{fmt.Sprintf("%s%d-probe", nsPrefix, os.Getpid())}
	if _, err := run("ip", "netns", "add", probe.name); err != nil {
		skip("cannot create network namespaces here: %v", err)
		return
	}
	run("ip", "netns", "del", probe.name)
}

var sweepOnce sync.Once

// sweepStale removes namespaces, and the processes in them, left by NAT
// test binaries that died without cleaning up (a -timeout panic skips
// t.Cleanup). Only names of our own pattern whose PID is gone are touched.
func sweepStale() {
	out, err := run("ip", "netns", "list")
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^` + nsPrefix + `(\d+)-\S+`)
	for _, line := range strings.Split(out, "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		deleteNetns(m[0])
	}
}

// deleteNetns kills the processes inside a namespace, then deletes it
// (which also deletes its interfaces and their veth peers).
func deleteNetns(name string) error {
	if pids, err := run("ip", "netns", "pids", name); err == nil {
		for _, f := range strings.Fields(pids) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_, err := run("ip", "netns", "del", name)
	return err
}

// home is one home network: a router doing NAT and the machine behind it.
type home struct {
	router, lan netns
	wanIP       string // the router's public address
	lanIP       string // the home machine's private address
}

// natLab is the topology drawn at the top of this file.
type natLab struct {
	t       *testing.T
	prefix  string
	created []string // namespace names, in order of creation
	pub     netns    // the internet
	boot    netns    // server for the bootstrap node, at bootIP
	public  netns    // server for a public peer, at publicIP
	homes   []home
	servers int
}

// newNATLab builds the topology with nHomes homes (at least 2; the drawing
// shows two, more are alike: home i is 1.0.i.2 and 192.168.i.0/24);
// t.Cleanup tears it down.
func newNATLab(t *testing.T, nHomes int) *natLab {
	t.Helper()
	needNetns(t)
	lab := &natLab{t: t, prefix: fmt.Sprintf("%s%d-%d-", nsPrefix, os.Getpid(), nsSeq.Add(1))}
	t.Cleanup(func() {
		for i := len(lab.created) - 1; i >= 0; i-- {
			if err := deleteNetns(lab.created[i]); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
	})
	lab.pub = lab.mkNetns("pub")
	lab.must("ip", "-n", lab.pub.name, "link", "add", "srv", "type", "bridge")
	lab.must("ip", "-n", lab.pub.name, "addr", "add", "1.0.0.254/24", "dev", "srv")
	lab.must("ip", "-n", lab.pub.name, "link", "set", "srv", "up")
	lab.mustSysctl(lab.pub, "net.ipv4.ip_forward", "1")
	lab.boot = lab.addServer("boot", bootIP)
	lab.public = lab.addServer("public", publicIP)
	for i := range nHomes {
		n := i + 1
		h := home{
			router: lab.mkNetns(fmt.Sprintf("rt%d", n)),
			lan:    lab.mkNetns(fmt.Sprintf("home%d", n)),
			wanIP:  fmt.Sprintf("1.0.%d.2", n),
			lanIP:  fmt.Sprintf("192.168.%d.2", n),
		}
		isp := fmt.Sprintf("isp%d", n)
		pub, rt, lan := lab.pub.name, h.router.name, h.lan.name
		lab.must("ip", "-n", pub, "link", "add", isp, "type", "veth", "peer", "name", "wan", "netns", rt)
		lab.must("ip", "-n", rt, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", lan)
		lab.must("ip", "-n", pub, "addr", "add", fmt.Sprintf("1.0.%d.1/24", n), "dev", isp)
		lab.must("ip", "-n", rt, "addr", "add", h.wanIP+"/24", "dev", "wan")
		lab.must("ip", "-n", rt, "addr", "add", fmt.Sprintf("192.168.%d.1/24", n), "dev", "lan")
		lab.must("ip", "-n", lan, "addr", "add", h.lanIP+"/24", "dev", "eth0")
		lab.must("ip", "-n", pub, "link", "set", isp, "up")
		lab.must("ip", "-n", rt, "link", "set", "wan", "up")
		lab.must("ip", "-n", rt, "link", "set", "lan", "up")
		lab.must("ip", "-n", lan, "link", "set", "eth0", "up")
		lab.must("ip", "-n", rt, "route", "add", "default", "via", fmt.Sprintf("1.0.%d.1", n))
		lab.must("ip", "-n", lan, "route", "add", "default", "via", fmt.Sprintf("192.168.%d.1", n))
		lab.mustSysctl(h.router, "net.ipv4.ip_forward", "1")
		lab.must("ip", "netns", "exec", rt, "nft", "-f", testdataPath(t, "home-router.nft"))
		lab.homes = append(lab.homes, h)
	}
	lab.must("ip", "netns", "exec", lab.pub.name, "nft", "-f", testdataPath(t, "internet.nft"))
	return lab
}

// makeSymmetric turns home i's router into a symmetric NAT: each new flow
// leaves from a random port, so a socket's public address depends on whom
// it talks to, as on some carrier-grade and corporate NATs. Its filtering
// stays that of home-router.nft.
func (lab *natLab) makeSymmetric(i int) {
	lab.t.Helper()
	rt := lab.homes[i].router.name
	lab.must("ip", "netns", "exec", rt, "nft", "flush", "chain", "ip", "nat", "postrouting")
	lab.must("ip", "netns", "exec", rt, "nft", "add", "rule", "ip", "nat", "postrouting", "oifname", "wan", "masquerade", "random")
}

// mkNetns creates a namespace with its loopback up.
func (lab *natLab) mkNetns(role string) netns {
	lab.t.Helper()
	n := netns{lab.prefix + role}
	lab.must("ip", "netns", "add", n.name)
	lab.created = append(lab.created, n.name)
	lab.must("ip", "-n", n.name, "link", "set", "lo", "up")
	return n
}

// addServer adds a machine with public address ip (in 1.0.0.0/24) on the
// internet's server network.
func (lab *natLab) addServer(role, ip string) netns {
	lab.t.Helper()
	lab.servers++
	n := lab.mkNetns(role)
	port := fmt.Sprintf("srv%d", lab.servers)
	lab.must("ip", "-n", lab.pub.name, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.name)
	lab.must("ip", "-n", lab.pub.name, "link", "set", port, "master", "srv", "up")
	lab.must("ip", "-n", n.name, "addr", "add", ip+"/24", "dev", "eth0")
	lab.must("ip", "-n", n.name, "link", "set", "eth0", "up")
	lab.must("ip", "-n", n.name, "route", "add", "default", "via", "1.0.0.254")
	return n
}

func testdataPath(t *testing.T, name string) string {
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (lab *natLab) must(argv ...string) string {
	lab.t.Helper()
	out, err := run(argv...)
	if err != nil {
		lab.t.Fatalf("set up namespaces: %v", err)
	}
	return out
}

func (lab *natLab) mustSysctl(n netns, key, value string) {
	lab.t.Helper()
	if err := n.sysctl(key, value); err != nil {
		lab.t.Fatalf("sysctl %s=%s in %s: %v", key, value, n.name, err)
	}
}

// counter reads a named nft counter in namespace n.
func (lab *natLab) counter(n netns, table, name string) (packets, bytes uint64) {
	lab.t.Helper()
	out := lab.must("ip", "netns", "exec", n.name, "nft", "-j", "list", "counter", "inet", table, name)
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
				Bytes   uint64 `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		lab.t.Fatalf("nft counter %s: %v: %s", name, err, out)
	}
	for _, e := range doc.Nftables {
		if e.Counter != nil {
			return e.Counter.Packets, e.Counter.Bytes
		}
	}
	lab.t.Fatalf("nft counter %s not found: %s", name, out)
	return 0, 0
}

// linkBytes reads the byte counters of an interface in namespace n.
func (lab *natLab) linkBytes(n netns, dev string) (rx, tx uint64) {
	lab.t.Helper()
	out := lab.must("ip", "-n", n.name, "-j", "-s", "link", "show", "dev", dev)
	var links []struct {
		Stats struct {
			RX struct {
				Bytes uint64 `json:"bytes"`
			} `json:"rx"`
			TX struct {
				Bytes uint64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		lab.t.Fatalf("ip link %s: %v: %s", dev, err, out)
	}
	return links[0].Stats.RX.Bytes, links[0].Stats.TX.Bytes
}

// conntrack returns the router's conntrack entries (one per line) that
// mention all of the given strings, e.g. "udp", "dst=1.0.2.2".
func (lab *natLab) conntrack(router netns, match ...string) []string {
	lab.t.Helper()
	var out []byte
	err := router.do(func() error {
		var err error
		out, err = os.ReadFile("/proc/thread-self/net/nf_conntrack")
		return err
	})
	if err != nil {
		lab.t.Fatalf("read conntrack table of %s: %v", router.name, err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		l := sc.Text()
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(l, m)
		}
		if ok {
			lines = append(lines, l)
		}
	}
	return lines
}

// labNode is a node process running in one of the lab's namespaces.
type labNode struct {
	*proc
	ns   netns
	http *http.Client
}

// launch starts bin inside ns without waiting for it. The process is
// killed in t.Cleanup (before the namespaces go, since cleanups run last
// registered first) and, through Pdeathsig, if the test binary dies.
func launch(t *testing.T, ns netns, name, bin string, args ...string) (*labNode, string) {
	t.Helper()
	infoFile := filepath.Join(t.TempDir(), "info.json")
	args = append(args, "--info-file", infoFile, "--log-format", "json")
	if !slices.Contains(args, "--log-level") {
		args = append(args, "--log-level", "debug")
	}
	cmd := ns.cmd(append([]string{bin}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := follow(t, name, cmd, nil)
	n := &labNode{proc: p, ns: ns, http: ns.client()}
	n.http.Transport = bearer{base: n.http.Transport, token: dataDirToken(args)}
	t.Cleanup(n.http.CloseIdleConnections)
	return n, infoFile
}

// waitStarted waits until the node has written its info file (it does so
// once its HTTP API is up) and loads it.
func (n *labNode) waitStarted(infoFile string, deadline time.Time) error {
	for {
		b, err := os.ReadFile(infoFile)
		if err == nil {
			return json.Unmarshal(b, &n.info)
		}
		select {
		case <-n.done:
			return fmt.Errorf("%s exited before starting; logs:\n%s", n.name, n.dump())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start in time; logs:\n%s", n.name, n.dump())
		}
	}
}

// startNode launches a node in ns and waits until its API is up.
func startNode(t *testing.T, ns netns, name, bin string, args ...string) *labNode {
	t.Helper()
	n, infoFile := launch(t, ns, name, bin, args...)
	if err := n.waitStarted(infoFile, time.Now().Add(60*time.Second)); err != nil {
		t.Fatal(err)
	}
	return n
}

// logTime returns when the node logged msg (from the record's own time),
// or false if it has not.
func (n *labNode) logTime(msg string) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.logs {
		if l["msg"] == msg {
			s, _ := l["time"].(string)
			ts, err := time.Parse(time.RFC3339Nano, s)
			return ts, err == nil
		}
	}
	return time.Time{}, false
}

func (n *labNode) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", n.info.HTTP+path, nil)
	if err != nil {
		return nil, err
	}
	return n.http.Do(req)
}

// natStatus is the part of GET /v1/status the NAT tests read.
type natStatus struct {
	PeerID           string   `json:"peer_id"`
	ListenAddrs      []string `json:"listen_addrs"`
	ConnectedPeers   int      `json:"connected_peers"`
	RoutingTableSize int      `json:"routing_table_size"`
	DHTMode          string   `json:"dht_mode"`
	Reachability     string   `json:"reachability"`
	RelayAddrs       []string `json:"relay_addrs"`
	Connections      []struct {
		Peer    string `json:"peer"`
		Addr    string `json:"addr"`
		Relayed bool   `json:"relayed"`
	} `json:"connections"`
	Topics []struct {
		Name  string `json:"name"`
		Peers int    `json:"peers"`
	} `json:"topics"`
	Bandwidth struct {
		MaxUpload   int64   `json:"max_upload"`
		MaxDownload int64   `json:"max_download"`
		TotalOut    int64   `json:"total_out"`
		RateOut     float64 `json:"rate_out"`
	} `json:"bandwidth"`
}

func (n *labNode) status() (natStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := n.get(ctx, "/v1/status")
	if err != nil {
		return natStatus{}, err
	}
	defer resp.Body.Close()
	var s natStatus
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("status: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// waitStatus polls the node's status until ok accepts it. Status changes
// (reachability, relay addresses, connections) have no event a process
// outside the node can wait on.
func (n *labNode) waitStatus(what string, timeout time.Duration, ok func(natStatus) bool) natStatus {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	var last natStatus
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			n.t.Fatalf("%s exited while waiting for %s; logs:\n%s", n.name, what, n.dump())
		default:
		}
		last, lastErr = n.status()
		if lastErr == nil && ok(last) {
			return last
		}
		time.Sleep(250 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "  ", "  ")
	n.t.Fatalf("%s: no %s within %v (last error %v); last status:\n  %s\nlogs:\n%s", n.name, what, timeout, lastErr, b, n.dump())
	return last
}

var (
	flagsMu    sync.Mutex
	flagsCache = map[string]string{}
)

// hasFlag reports whether the binary lists --name in its usage.
func hasFlag(bin, name string) bool {
	flagsMu.Lock()
	defer flagsMu.Unlock()
	usage, ok := flagsCache[bin]
	if !ok {
		out, _ := exec.Command(bin, "-h").CombinedOutput()
		usage = string(out)
		flagsCache[bin] = usage
	}
	return strings.Contains(usage, "\n  -"+name+" ") || strings.Contains(usage, "\n  -"+name+"\n")
}
