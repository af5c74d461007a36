package webrtc

// BenchmarkFanout measures 1 publisher -> K subscribers on one server, for
// this package's stack (frames, auth, queues, batching) over data channels
// and over WebSockets, for bare pion data channels and bare gorilla
// WebSockets doing the same fan-out with none of it (the floors), and for
// the centrifuge library over WebSockets (a reference server of the same
// kind). Run it alone, for example:
//
//	go test ./webrtc -run '^$' -bench Fanout -benchtime 1000x -webrtc.bench-k 100,500
//
// Centrifuge is not a dependency of this module: mode "centrifuge" builds
// the nested module in centrifugebench/ with the go command (so it needs
// the module cache or proxy; without them it skips) and runs it as the
// server process, asking it for its own CPU time and memory.
//
// Each iteration publishes one message; the publisher is paced at
// -webrtc.bench-rate messages per second (default 200), so 1000x takes five
// seconds. The K subscribers run in a child process (this test binary,
// re-executed as TestBenchFarm) so that the CPU and memory measured in this
// process are the server's alone. Reported per sub-benchmark:
//
//	deliv/s        messages received per second, all subscribers together
//	pub/s          messages actually published per second; below the
//	               offered rate when publishing blocks on a busy server
//	p50-ms p99-ms  latency from the time a message was due to be
//	               published (its slot in the schedule) to its receipt
//	cpu-s/1k-deliv server CPU seconds (user+sys) per 1000 deliveries
//	deliv/cpu-s    the same, inverted: deliveries per server CPU second
//	KiB/sub        server heap+stacks per connected subscriber, over the
//	               server's own once it runs with no subscriber, just
//	               after the subscribers connected (messages flowing)
//	idle-KiB/sub   the same once the messages have drained (what a
//	               connection costs with no backlog)
//	first-msg-ms   median time from a client starting its offer (or
//	               WebSocket dial) to its first message (up to one
//	               warm-up interval late with -webrtc.bench-warm-rate)
//	lost           messages published but not received (drops)
//	subs           subscribers measured: K, or those connected when
//	               -webrtc.bench-connect-timeout (8m) ran out
//	dial-fails     connections that failed (not measured)
//	client-cpu-s/1k-deliv  the subscriber process's CPU per 1000 deliveries
//	               (it shares the machine, so it limits the server too)
//
// The run ends with a table of all modes and the ratios between them.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pion "github.com/pion/webrtc/v4"
)

var (
	benchK              = flag.String("webrtc.bench-k", "100,500", "subscriber counts for BenchmarkFanout, comma-separated")
	benchRate           = flag.Float64("webrtc.bench-rate", 200, "publish rate of BenchmarkFanout, messages per second")
	benchSize           = flag.Int("webrtc.bench-size", 128, "payload size of BenchmarkFanout, bytes")
	benchModes          = flag.String("webrtc.bench-modes", "stack,bare,ws,barews,centrifuge", "what BenchmarkFanout measures: stack (this package over data channels), bare (pion alone), ws (this package over WebSockets), barews (gorilla WebSockets alone), centrifuge (the centrifuge library over WebSockets, in a process of its own)")
	benchFanoutInterval = flag.Duration("webrtc.bench-fanout-interval", DefaultConfig().FanoutInterval, "Config.FanoutInterval of the stack and ws modes")
	benchPacketRate     = flag.Float64("webrtc.bench-fanout-packet-rate", DefaultConfig().FanoutPacketRate, "Config.FanoutPacketRate of the stack and ws modes")
	benchDCMaxK         = flag.Int("webrtc.bench-dc-max-k", 0, "BenchmarkFanout skips the data channel modes (stack, bare) above this K; 0: no limit")
	benchWarmRate       = flag.Float64("webrtc.bench-warm-rate", 0, "publish rate of BenchmarkFanout while its subscribers connect, messages per second; 0: -webrtc.bench-rate (at K=2,000 over data channels a full-rate warm-up leaves too little CPU for the handshakes)")
	benchConnectTimeout = flag.Duration("webrtc.bench-connect-timeout", 8*time.Minute, "BenchmarkFanout's subscriber process starts no more connections after this and measures the subscribers it has (reported as subs)")
	benchResults        sync.Map // "mode/K" -> farmResult, for the comparison table
)

const (
	benchTopic   = "bench"
	farmEnv      = "IMMENSE_WEBRTC_BENCH_FARM" // set in the child process: "mode url k"
	farmDialConc = 16
	// farmDialTimeout bounds one subscriber's connection.
	farmDialTimeout = 2 * time.Minute
)

// farmResult is what the subscriber process reports.
type farmResult struct {
	Deliveries   int64   `json:"deliveries"`
	Expected     int64   `json:"expected"`
	OutOfOrder   int64   `json:"out_of_order"`
	P50us        int64   `json:"p50_us"`
	P99us        int64   `json:"p99_us"`
	MaxUs        int64   `json:"max_us"`
	FirstMsgP50  float64 `json:"first_msg_p50_ms"`
	FirstMsgMax  float64 `json:"first_msg_max_ms"`
	LastRecvUnix int64   `json:"last_recv_unix_nano"`
	// ClientCPUs is the subscriber process's CPU time over the measured
	// window: both ends share this machine, so a costly client slows the
	// server's deliveries too.
	ClientCPUs float64 `json:"client_cpu_s"`
	// Filled in by the parent.
	CPUs      float64 `json:"-"`
	Wall      float64 `json:"-"`
	KiBPerSub float64 `json:"-"`
	IdleKiB   float64 `json:"-"` // memory per subscriber once the backlog drained
	Subs      int     `json:"-"` // subscribers connected: K, or fewer if connecting took longer than -webrtc.bench-connect-timeout
	PubRate   float64 `json:"-"` // messages published per second in the measured window
}

func BenchmarkFanout(b *testing.B) {
	var ks []int
	for _, f := range strings.Split(*benchK, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			b.Fatalf("bad -webrtc.bench-k %q", *benchK)
		}
		ks = append(ks, k)
	}
	modes := strings.Split(*benchModes, ",")
	for _, k := range ks {
		for _, mode := range modes {
			b.Run(fmt.Sprintf("%s/K=%d", mode, k), func(b *testing.B) { benchFanout(b, mode, k) })
		}
	}
	printComparison(ks)
}

// printComparison prints every mode and the ratios between them for each
// K measured. It goes to stdout, beside the benchmark lines, where
// benchstat ignores it.
func printComparison(ks []int) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-6s %-10s %6s %8s %10s %12s %8s %8s %9s %9s %12s %6s\n", "K", "mode", "subs", "pub/s", "deliv/s", "deliv/cpu-s", "p50-ms", "p99-ms", "KiB/sub", "idle-KiB", "first-msg-ms", "lost")
	for _, k := range ks {
		for _, mode := range []string{"stack", "bare", "ws", "barews", "centrifuge"} {
			v, ok := benchResults.Load(fmt.Sprintf("%s/%d", mode, k))
			if !ok {
				continue
			}
			r := v.(farmResult)
			fmt.Fprintf(&sb, "%-6d %-10s %6d %8.1f %10.0f %12.0f %8.1f %8.1f %9.0f %9.0f %12.0f %6d\n", k, mode, r.Subs, r.PubRate,
				float64(r.Deliveries)/r.Wall, float64(r.Deliveries)/r.CPUs, float64(r.P50us)/1000, float64(r.P99us)/1000,
				r.KiBPerSub, r.IdleKiB, r.FirstMsgP50, r.Expected-r.Deliveries)
		}
		for _, pair := range [][2]string{{"stack", "bare"}, {"ws", "barews"}, {"ws", "bare"}, {"ws", "stack"}, {"ws", "centrifuge"}, {"stack", "centrifuge"}} {
			s, ok1 := benchResults.Load(fmt.Sprintf("%s/%d", pair[0], k))
			f, ok2 := benchResults.Load(fmt.Sprintf("%s/%d", pair[1], k))
			if ok1 && ok2 {
				st, fl := s.(farmResult), f.(farmResult)
				fmt.Fprintf(&sb, "K=%d %s/%s: deliveries per CPU-second x%.2f, p99 x%.2f, memory per subscriber x%.2f\n", k, pair[0], pair[1],
					(float64(st.Deliveries)/st.CPUs)/(float64(fl.Deliveries)/fl.CPUs), float64(st.P99us)/float64(fl.P99us), st.KiBPerSub/fl.KiBPerSub)
			}
		}
	}
	fmt.Print(sb.String())
}

// benchServer is what a benchmark mode publishes through. The servers in
// this process are also http.Handlers; centrifugeServer runs elsewhere.
type benchServer interface {
	publish(payload []byte)
	close()
}

type stackServer struct {
	srv *Server
	bus *memBus
}

func (s *stackServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == WebSocketPath {
		s.srv.WebSocketHandler().ServeHTTP(w, r)
		return
	}
	s.srv.ServeHTTP(w, r)
}
func (s *stackServer) publish(p []byte) {
	_ = s.bus.Publish(context.Background(), benchTopic, p, "", nil)
}
func (s *stackServer) close() { s.srv.Close() }

// bareServer is the floor: pion data channels and a loop calling Send on
// each, with no framing, authorisation, queueing or batching.
type bareServer struct {
	api *pion.API
	mu  sync.Mutex
	dcs []*pion.DataChannel
	pcs []*pion.PeerConnection
}

func (s *bareServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := decodeOfferRequest(r.Body, 64<<10)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pc, err := s.api.NewPeerConnection(pion.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	s.pcs = append(s.pcs, pc)
	s.mu.Unlock()
	pc.OnDataChannel(func(dc *pion.DataChannel) {
		dc.OnOpen(func() {
			s.mu.Lock()
			s.dcs = append(s.dcs, dc)
			s.mu.Unlock()
		})
	})
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeOffer, SDP: req.SDP}); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ans, _ := pc.CreateAnswer(nil)
	gathered := pion.GatheringCompletePromise(pc)
	_ = pc.SetLocalDescription(ans)
	<-gathered
	writeJSON(w, http.StatusOK, offerResponse{Type: "answer", SDP: pc.LocalDescription().SDP})
}

func (s *bareServer) publish(p []byte) {
	s.mu.Lock()
	dcs := s.dcs
	s.mu.Unlock()
	for _, dc := range dcs {
		_ = dc.Send(p)
	}
}

func (s *bareServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pc := range s.pcs {
		_ = pc.GracefulClose()
	}
}

// bareWSServer is the WebSocket floor: gorilla connections and a loop
// writing each payload to each, with no framing, authorisation, queueing
// or batching (the counterpart of bareServer).
type bareWSServer struct {
	up    websocket.Upgrader
	mu    sync.Mutex
	conns []*websocket.Conn
}

func (s *bareWSServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
}

func (s *bareWSServer) publish(p []byte) {
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.WriteMessage(websocket.BinaryMessage, p)
	}
}

func (s *bareWSServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
}

// centrifugeBuild builds the centrifuge server once per run.
var centrifugeBuild = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "centrifugebench")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "centrifugebench")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "centrifugebench"
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in webrtc/centrifugebench: %v: %s", err, bytes.TrimSpace(out))
	}
	return bin, nil
})

// centrifugeServer is the centrifuge library over WebSockets, running in a
// process of its own (centrifugebench/main.go describes the protocol).
type centrifugeServer struct {
	cmd *exec.Cmd
	url string
	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Scanner
	err error // the first failure of the process
}

func startCentrifuge() (*centrifugeServer, error) {
	bin, err := centrifugeBuild()
	if err != nil {
		return nil, err
	}
	s := &centrifugeServer{cmd: exec.Command(bin)}
	s.cmd.Stderr = os.Stderr
	s.in, _ = s.cmd.StdinPipe()
	stdout, _ := s.cmd.StdoutPipe()
	s.out = bufio.NewScanner(stdout)
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for s.out.Scan() {
		if v, ok := strings.CutPrefix(s.out.Text(), "URL "); ok {
			s.url = v
			return s, nil
		}
	}
	s.close()
	return nil, fmt.Errorf("centrifuge server ended before saying where it listens: %v", s.out.Err())
}

// call sends one command and returns the argument of its reply, which must
// start with want.
func (s *centrifugeServer) call(cmd, want string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return ""
	}
	if _, err := fmt.Fprintln(s.in, cmd); err != nil {
		s.err = fmt.Errorf("centrifuge server: %w", err)
		return ""
	}
	if !s.out.Scan() {
		s.err = fmt.Errorf("centrifuge server ended: %v", s.out.Err())
		return ""
	}
	rest, ok := strings.CutPrefix(s.out.Text(), want)
	if !ok {
		s.err = fmt.Errorf("centrifuge server answered %q to %.40q", s.out.Text(), cmd)
	}
	return strings.TrimSpace(rest)
}

// publish sends the payload's sequence number and due time as a JSON
// object of the same size (centrifuge's JSON protocol embeds publications
// as JSON); centrifugeFarmDial turns it back.
func (s *centrifugeServer) publish(p []byte) {
	j := fmt.Appendf(nil, `{"seq":%d,"due":%d,"pad":"`, binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:]))
	for len(j) < len(p)-2 {
		j = append(j, 'x')
	}
	s.call("PUB "+string(j)+`"}`, "OK")
}

func (s *centrifugeServer) heap() uint64 {
	n, _ := strconv.ParseUint(s.call("HEAP", "HEAP "), 10, 64)
	return n
}

func (s *centrifugeServer) cpu() time.Duration {
	n, _ := strconv.ParseInt(s.call("CPU", "CPU "), 10, 64)
	return time.Duration(n)
}

func (s *centrifugeServer) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *centrifugeServer) close() {
	_ = s.in.Close() // the server shuts down at the end of its input
	_ = s.cmd.Wait()
}

func benchFanout(b *testing.B, mode string, k int) {
	if (mode == "stack" || mode == "bare") && *benchDCMaxK > 0 && k > *benchDCMaxK {
		b.Skipf("data channels above K=%d are off (-webrtc.bench-dc-max-k)", *benchDCMaxK)
	}
	// Errors only: the insecure-no-auth warning would land in the middle
	// of the benchmark's output line.
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	if os.Getenv("IMMENSE_BENCH_HEAP") != "" {
		// Every allocation in the profile, not a sample every 512 KiB.
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	var bs benchServer
	switch mode {
	case "stack", "ws":
		cfg := DefaultConfig()
		cfg.MaxSessionsPerSubject, cfg.OfferRate, cfg.MaxPendingPerClient = 0, 0, 0 // K clients, one token, one address
		cfg.InsecureNoAuth = true                                                   // auth is per offer, not per message: no cost in the fan-out
		cfg.LoopbackOnly = true
		cfg.MaxSessions = k + 10
		cfg.FanoutInterval = *benchFanoutInterval
		cfg.FanoutPacketRate = *benchPacketRate
		cfg.Logger = quiet
		bus := newMemBus()
		srv, err := New(bus, cfg)
		if err != nil {
			b.Fatal(err)
		}
		bs = &stackServer{srv, bus}
	case "bare":
		api, err := newAPI(transportOptions{loopbackOnly: true, log: quiet})
		if err != nil {
			b.Fatal(err)
		}
		bs = &bareServer{api: api}
	case "barews":
		bs = &bareWSServer{}
	case "centrifuge":
		cs, err := startCentrifuge()
		if err != nil {
			b.Skipf("no centrifuge server: %v", err)
		}
		bs = cs
	default:
		b.Fatalf("unknown mode %q", mode)
	}
	defer bs.close()
	var url string
	heapNow, cpuNow := heapAndStacks, cpuTime
	if cs, ok := bs.(*centrifugeServer); ok {
		url = cs.url
		heapNow, cpuNow = cs.heap, cs.cpu
	} else {
		hs := httptest.NewServer(bs.(http.Handler))
		defer hs.Close()
		url = hs.URL + OfferPath
		if mode == "ws" || mode == "barews" {
			url = "ws" + strings.TrimPrefix(hs.URL, "http") + WebSocketPath
		}
	}
	// Allocated before the baseline: it is the benchmark's, not the
	// server's.
	scanBuf := make([]byte, 1<<20)
	m0 := settledHeap(heapNow) // the server's memory with no subscriber
	var ms0 runtime.MemStats   // the same, in parts, for the profile mode
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()

	// Messages flow from the start, so that each subscriber's first
	// message measures its connection time.
	pub := &benchPublisher{srv: bs, size: *benchSize, interval: time.Duration(float64(time.Second) / *benchRate)}
	if *benchWarmRate > 0 {
		pub.warm = time.Duration(float64(time.Second) / *benchWarmRate)
	}
	warmCtx, stopWarm := context.WithCancel(context.Background())
	warmDone := make(chan struct{})
	go func() {
		defer close(warmDone)
		pub.run(warmCtx)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	farm := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBenchFarm$")
	farm.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d %s", farmEnv, mode, url, k, *benchConnectTimeout))
	farm.Stderr = os.Stderr
	stdin, _ := farm.StdinPipe()
	stdoutPipe, _ := farm.StdoutPipe()
	if err := farm.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = farm.Wait()
	}()
	out := bufio.NewScanner(stdoutPipe)
	out.Buffer(scanBuf, len(scanBuf))
	expectLine := func(prefix string) string {
		var other []string // what the process said instead (its test failure)
		for out.Scan() {
			if rest, ok := strings.CutPrefix(out.Text(), prefix); ok {
				return rest
			}
			other = append(other[max(0, len(other)-19):], out.Text())
		}
		b.Fatalf("subscriber process ended before %q: %v\n%s", prefix, out.Err(), strings.Join(other, "\n"))
		return ""
	}
	var subs, failed int
	if _, err := fmt.Sscanf(expectLine("READY "), "%d %d", &subs, &failed); err != nil || subs < 1 {
		b.Fatalf("subscriber process: READY %d: %v", subs, err)
	}
	if subs < k {
		b.Logf("only %d of %d subscribers connected within %v (%d connections failed); measuring those", subs, k, *benchConnectTimeout, failed)
	}
	stopWarm()
	<-warmDone

	// Signed: with few bytes per subscriber, GC noise can make it negative.
	kibPerSub := float64(int64(heapNow())-int64(m0)) / 1024 / float64(subs)
	// The same once what was published has drained (at most 10 s): what
	// a connected subscriber costs with no backlog, where kibPerSub
	// includes what a server that fell behind still holds.
	idleKiBPerSub := float64(int64(settledHeap(heapNow))-int64(m0)) / 1024 / float64(subs)
	if dir := os.Getenv("IMMENSE_BENCH_HEAP"); dir != "" {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		per := func(now, before uint64) float64 { return (float64(now) - float64(before)) / 1024 / float64(subs) }
		fmt.Fprintf(os.Stderr, "%s/K=%d per subscriber, over the server with none: heap in use %.1f KiB (allocated %.1f KiB), stacks %.1f KiB, goroutines %.1f\n", mode, k,
			per(ms.HeapInuse, ms0.HeapInuse), per(ms.HeapAlloc, ms0.HeapAlloc), per(ms.StackInuse, ms0.StackInuse), float64(runtime.NumGoroutine()-g0)/float64(subs))
		f, _ := os.Create(fmt.Sprintf("%s/heap-%s-%d.pprof", dir, mode, k))
		_ = pprof.WriteHeapProfile(f)
		f.Close()
		g, _ := os.Create(fmt.Sprintf("%s/goroutine-%s-%d.txt", dir, mode, k))
		_ = pprof.Lookup("goroutine").WriteTo(g, 1)
		g.Close()
	}
	s0 := pub.next()
	fmt.Fprintf(stdin, "START %d\n", s0)
	cpu0, t0 := cpuNow(), time.Now()
	pub.start()
	for b.Loop() {
		pub.tick()
	}
	pubWall := time.Since(t0)
	last := pub.next() - 1
	fmt.Fprintf(stdin, "STOP %d\n", last)
	var r farmResult
	if err := json.Unmarshal([]byte(expectLine("RESULT ")), &r); err != nil {
		b.Fatal(err)
	}
	r.CPUs = (cpuNow() - cpu0).Seconds()
	r.PubRate = float64(last-s0+1) / pubWall.Seconds()
	r.Wall = time.Unix(0, r.LastRecvUnix).Sub(t0).Seconds()
	r.KiBPerSub = kibPerSub
	r.IdleKiB = idleKiBPerSub
	r.Subs = subs
	if r.Deliveries == 0 || r.Wall <= 0 {
		b.Fatalf("nothing delivered: %+v", r)
	}
	if r.OutOfOrder > 0 {
		b.Errorf("%d messages out of order", r.OutOfOrder)
	}
	if cs, ok := bs.(*centrifugeServer); ok && cs.failed() != nil {
		b.Fatal(cs.failed())
	}
	benchResults.Store(fmt.Sprintf("%s/%d", mode, k), r)
	b.ReportMetric(float64(r.Deliveries)/r.Wall, "deliv/s")
	b.ReportMetric(r.PubRate, "pub/s")
	b.ReportMetric(float64(r.P50us)/1000, "p50-ms")
	b.ReportMetric(float64(r.P99us)/1000, "p99-ms")
	b.ReportMetric(r.CPUs/float64(r.Deliveries)*1000, "cpu-s/1k-deliv")
	b.ReportMetric(float64(r.Deliveries)/r.CPUs, "deliv/cpu-s")
	b.ReportMetric(kibPerSub, "KiB/sub")
	b.ReportMetric(idleKiBPerSub, "idle-KiB/sub")
	b.ReportMetric(float64(subs), "subs")
	b.ReportMetric(float64(failed), "dial-fails")
	b.ReportMetric(r.FirstMsgP50, "first-msg-ms")
	b.ReportMetric(float64(r.Expected-r.Deliveries), "lost")
	b.ReportMetric(r.ClientCPUs/float64(r.Deliveries)*1000, "client-cpu-s/1k-deliv")
}

// benchPublisher publishes numbered, timestamped payloads at a fixed
// interval.
type benchPublisher struct {
	srv      benchServer
	size     int
	interval time.Duration
	warm     time.Duration // the interval of run (the warm-up); 0: interval
	seq      atomic.Int64
	due      time.Time
}

func (p *benchPublisher) next() int64 { return p.seq.Load() }

// publishOne publishes a message stamped with the time it was due, not
// the time it went out: a publisher held up by a busy server is latency
// too (else the slower the server, the better its figures).
func (p *benchPublisher) publishOne(due time.Time) {
	b := make([]byte, max(p.size, 16))
	binary.BigEndian.PutUint64(b, uint64(p.seq.Load()))
	binary.BigEndian.PutUint64(b[8:], uint64(due.UnixNano()))
	p.srv.publish(b)
	p.seq.Add(1)
}

func (p *benchPublisher) run(ctx context.Context) {
	t := time.NewTicker(cmp.Or(p.warm, p.interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case due := <-t.C:
			p.publishOne(due)
		}
	}
}

func (p *benchPublisher) start() { p.due = time.Now() }

// tick waits for the next slot and publishes. Slots are fixed in advance,
// so a slow publish is caught up rather than lowering the rate.
func (p *benchPublisher) tick() {
	p.due = p.due.Add(p.interval)
	if d := time.Until(p.due); d > 0 {
		time.Sleep(d)
	}
	p.publishOne(p.due)
}

// settledHeap waits (up to 10 s) until the previous sub-benchmark's
// connections have finished closing, which pion does on goroutines of its
// own, and returns the heap then: measured too early, their memory is
// freed during this run and the per-subscriber figure comes out too low,
// even negative. heapNow reads the server's memory: this process's, or the
// centrifuge process's.
func settledHeap(heapNow func() uint64) uint64 {
	prev := heapNow()
	for range 20 {
		time.Sleep(500 * time.Millisecond)
		m := heapNow()
		if max(m, prev)-min(m, prev) < prev/100 {
			return m
		}
		prev = m
	}
	return prev
}

// heapAndStacks returns the memory in use after a full collection. Two
// collections empty sync.Pools (which keep a victim generation), so that
// buffers pooled by an earlier sub-benchmark are not counted.
func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBenchFarm is not a test: it is the subscriber process of
// BenchmarkFanout, and skips unless started by it.
func TestBenchFarm(t *testing.T) {
	spec := os.Getenv(farmEnv)
	if spec == "" {
		t.Skip("the subscriber process of BenchmarkFanout")
	}
	var mode, url, timeout string
	var k int
	if _, err := fmt.Sscanf(spec, "%s %s %d %s", &mode, &url, &k, &timeout); err != nil {
		t.Fatalf("bad %s=%q: %v", farmEnv, spec, err)
	}
	connectTimeout, err := time.ParseDuration(timeout)
	if err != nil {
		t.Fatalf("bad %s=%q: %v", farmEnv, spec, err)
	}
	if err := runFarm(mode, url, k, connectTimeout, os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

type farmSub struct {
	connected  bool
	start      time.Time
	first      time.Time
	lastSeq    atomic.Int64
	recvAt     time.Time // receive time of the newest measured message
	lat        []int64   // microseconds, for messages from the measured window
	outOfOrder int64
	mu         sync.Mutex
}

func runFarm(mode, url string, k int, connectTimeout time.Duration, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var s0 atomic.Int64
	s0.Store(math.MaxInt64)
	subs := make([]*farmSub, k)
	var closers []func()
	var closersMu sync.Mutex
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, k)
	sem := make(chan struct{}, farmDialConc)
	dialStart := time.Now()
	for i := range subs {
		if time.Since(dialStart) > connectTimeout {
			// Measure the subscribers there are: the parent reports how
			// many.
			subs = subs[:i]
			break
		}
		fs := &farmSub{}
		fs.lastSeq.Store(-1)
		subs[i] = fs
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fs.start = time.Now()
			// Bounded, so that one connection the server gave up on
			// (its ConnectTimeout, on a starved machine) cannot hold up
			// the measurement; such failures are counted, not fatal.
			dctx, dcancel := context.WithTimeout(ctx, farmDialTimeout)
			msgs, closeFn, err := farmDial(dctx, mode, url, quiet)
			dcancel()
			if err != nil {
				errs <- err
				return
			}
			fs.connected = true
			closersMu.Lock()
			closers = append(closers, closeFn)
			if n := len(closers); n%max(1, k/10) == 0 {
				// Progress on stderr: connecting thousands of data
				// channels on a loaded machine takes minutes.
				fmt.Fprintf(os.Stderr, "farm %s: %d of %d subscribers connected after %v\n", mode, n, k, time.Since(dialStart).Round(time.Second))
			}
			closersMu.Unlock()
			go fs.consume(msgs, &s0)
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	var firstErr error
	for err := range errs {
		if firstErr == nil {
			firstErr = err
		}
		failed++
	}
	connected := subs[:0:0]
	for _, fs := range subs {
		if fs.connected {
			connected = append(connected, fs)
		}
	}
	if len(connected) == 0 {
		return fmt.Errorf("no subscriber connected: %w", firstErr)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "farm %s: %d of %d connections failed, the first: %v\n", mode, failed, len(subs), firstErr)
	}
	subs = connected
	fmt.Fprintln(out, "READY", len(subs), failed)

	lines := bufio.NewScanner(in)
	var last int64
	var cpu0 time.Duration
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) != 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		if f[0] == "START" {
			s0.Store(n)
			cpu0 = cpuTime()
		}
		if f[0] == "STOP" {
			last = n
			break
		}
	}
	// Wait for the last message everywhere, or give up after a while (the
	// missing deliveries are then reported as lost).
	deadline := time.Now().Add(30 * time.Second)
	for _, fs := range subs {
		for fs.lastSeq.Load() < last && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	var r farmResult
	var lat []int64
	var firsts []float64
	var lastRecv time.Time
	for _, fs := range subs {
		fs.mu.Lock()
		lat = append(lat, fs.lat...)
		r.OutOfOrder += fs.outOfOrder
		if !fs.first.IsZero() {
			firsts = append(firsts, float64(fs.first.Sub(fs.start).Microseconds())/1000)
		}
		fs.mu.Unlock()
	}
	for _, fs := range subs {
		fs.mu.Lock()
		if fs.recvAt.After(lastRecv) {
			lastRecv = fs.recvAt
		}
		fs.mu.Unlock()
	}
	r.Deliveries = int64(len(lat))
	r.Expected = int64(len(subs)) * (last - s0.Load() + 1)
	slices.Sort(lat)
	slices.Sort(firsts)
	if len(lat) > 0 {
		r.P50us, r.P99us, r.MaxUs = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	if len(firsts) > 0 {
		r.FirstMsgP50, r.FirstMsgMax = firsts[len(firsts)/2], firsts[len(firsts)-1]
	}
	r.LastRecvUnix = lastRecv.UnixNano()
	r.ClientCPUs = (cpuTime() - cpu0).Seconds()
	j, _ := json.Marshal(r)
	fmt.Fprintf(out, "RESULT %s\n", j)
	return nil
}

func (fs *farmSub) consume(msgs <-chan []byte, s0 *atomic.Int64) {
	prev := int64(-1)
	for p := range msgs {
		now := time.Now()
		if len(p) < 16 {
			continue
		}
		seq := int64(binary.BigEndian.Uint64(p))
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(p[8:])))
		fs.mu.Lock()
		if fs.first.IsZero() {
			fs.first = now
		}
		if seq <= prev {
			fs.outOfOrder++
		}
		if seq >= s0.Load() {
			fs.lat = append(fs.lat, now.Sub(sent).Microseconds())
			fs.recvAt = now
		}
		fs.mu.Unlock()
		prev = seq
		fs.lastSeq.Store(seq)
	}
}

// farmDial connects one subscriber and returns its payloads.
func farmDial(ctx context.Context, mode, url string, log *slog.Logger) (<-chan []byte, func(), error) {
	switch mode {
	case "ws":
		return wsFarmDial(ctx, url)
	case "centrifuge":
		return centrifugeFarmDial(ctx, url)
	case "barews":
		c, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
		if err != nil {
			return nil, nil, err
		}
		ch := make(chan []byte, 4096)
		go func() {
			defer close(ch)
			for {
				_, b, err := c.ReadMessage()
				if err != nil {
					return
				}
				ch <- b
			}
		}()
		return ch, func() { c.Close() }, nil
	case "stack":
		c, err := Dial(ctx, url, "", WithLoopbackOnly(), WithClientLogger(log), WithMessageBuffer(4096))
		if err != nil {
			return nil, nil, err
		}
		if err := c.Subscribe(ctx, benchTopic); err != nil {
			c.Close()
			return nil, nil, err
		}
		ch := make(chan []byte, 4096)
		go func() {
			defer close(ch)
			for m := range c.Messages() {
				ch <- m.Data
			}
		}()
		return ch, func() { c.Close() }, nil
	case "bare":
		api, err := newAPI(transportOptions{loopbackOnly: true, log: log})
		if err != nil {
			return nil, nil, err
		}
		pc, err := api.NewPeerConnection(pion.Configuration{})
		if err != nil {
			return nil, nil, err
		}
		dc, err := pc.CreateDataChannel(dataChannelLabel, nil)
		if err != nil {
			return nil, nil, err
		}
		ch := make(chan []byte, 4096)
		opened := make(chan struct{})
		var once sync.Once
		dc.OnOpen(func() { close(opened) })
		dc.OnMessage(func(m pion.DataChannelMessage) { ch <- m.Data })
		dc.OnClose(func() { once.Do(func() { close(ch) }) })
		if err := negotiate(ctx, http.DefaultClient, pc, url, ""); err != nil {
			return nil, nil, err
		}
		select {
		case <-opened:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return ch, func() { _ = pc.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown mode %q", mode)
}

// wsFarmDial connects one WebSocket subscriber, as the JS client does:
// the token (none: the bench server is insecure-no-auth), the server's
// ACK, then SUBSCRIBE.
func wsFarmDial(ctx context.Context, url string) (<-chan []byte, func(), error) {
	c, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, nil, err
	}
	sub, _ := appendFrame(nil, &frame{typ: frameSubscribe, req: 1, topic: benchTopic})
	if err := c.WriteMessage(websocket.TextMessage, nil); err != nil {
		c.Close()
		return nil, nil, err
	}
	if err := c.WriteMessage(websocket.BinaryMessage, sub); err != nil {
		c.Close()
		return nil, nil, err
	}
	ch := make(chan []byte, 4096)
	acked := make(chan error, 1)
	go func() {
		defer close(ch)
		subscribed := false
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				if !subscribed {
					acked <- err
				}
				return
			}
			f, err := decodeFrame(b, maxFrameSizeLimit)
			if err != nil {
				continue
			}
			items := []frame{f}
			if f.typ == frameBatch {
				items = f.items
			}
			for _, it := range items {
				switch {
				case it.typ == frameAck && it.req == 1 && !subscribed:
					subscribed = true
					acked <- nil
				case it.typ == frameMessage:
					ch <- it.payload
				}
			}
		}
	}()
	return awaitSubscribed(ctx, c, acked, ch)
}

// centrifugeFarmDial connects one subscriber with centrifuge's JSON
// protocol (github.com/centrifugal/protocol, client.proto): a connect
// command and a subscribe command, newline-separated in one message; then
// replies, newline-separated, each a reply to a command (with its id), a
// push (a publication of the channel) or {} (the server's ping, answered
// with {}). Publications come back as the 16-byte header consume reads.
func centrifugeFarmDial(ctx context.Context, url string) (<-chan []byte, func(), error) {
	c, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, nil, err
	}
	cmds := `{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + benchTopic + `"}}`
	if err := c.WriteMessage(websocket.TextMessage, []byte(cmds)); err != nil {
		c.Close()
		return nil, nil, err
	}
	type reply struct {
		ID    uint32 `json:"id"`
		Error *struct {
			Code    uint32 `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Push *struct {
			Disconnect json.RawMessage `json:"disconnect"`
		} `json:"push"`
	}
	ch := make(chan []byte, 4096)
	acked := make(chan error, 1)
	go func() {
		defer close(ch)
		subscribed := false
		fail := func(err error) {
			if !subscribed {
				subscribed = true
				acked <- err
			}
		}
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				fail(err)
				return
			}
			for line := range bytes.SplitSeq(bytes.TrimSpace(b), []byte("\n")) {
				if p, ok := centrifugePublication(line); ok {
					ch <- p
					continue
				}
				var r reply
				if err := json.Unmarshal(line, &r); err != nil {
					fail(fmt.Errorf("centrifuge reply %.60q: %w", line, err))
					continue
				}
				switch {
				case r.Error != nil:
					fail(fmt.Errorf("centrifuge error %d: %s", r.Error.Code, r.Error.Message))
				case r.ID == 2 && !subscribed:
					subscribed = true
					acked <- nil
				case r.Push != nil && r.Push.Disconnect != nil:
					fail(fmt.Errorf("centrifuge disconnect: %s", r.Push.Disconnect))
				case r.ID == 0 && r.Push == nil:
					_ = c.WriteMessage(websocket.TextMessage, []byte("{}"))
				}
			}
		}
	}()
	return awaitSubscribed(ctx, c, acked, ch)
}

// centrifugePublication picks the sequence number and due time out of a
// push of one of the benchmark's publications,
// {"push":{"channel":"bench","pub":{"data":{"seq":N,"due":T,"pad":"x..."}}}},
// without a JSON decoder: the subscriber process decodes K messages per
// publication, and a slow one slows the server it shares the machine with.
func centrifugePublication(line []byte) ([]byte, bool) {
	if !bytes.HasPrefix(line, []byte(`{"push":`)) {
		return nil, false
	}
	field := func(name string) (uint64, bool) {
		_, rest, ok := bytes.Cut(line, []byte(`"`+name+`":`))
		if !ok {
			return 0, false
		}
		end := bytes.IndexByte(rest, ',')
		if end < 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(string(rest[:end]), 10, 64)
		return n, err == nil
	}
	seq, ok1 := field("seq")
	due, ok2 := field("due")
	if !ok1 || !ok2 {
		return nil, false
	}
	p := make([]byte, 16)
	binary.BigEndian.PutUint64(p, seq)
	binary.BigEndian.PutUint64(p[8:], due)
	return p, true
}

// awaitSubscribed returns a WebSocket subscriber's messages once its
// reader has reported the subscription (nil on acked) or its failure.
func awaitSubscribed(ctx context.Context, c *websocket.Conn, acked <-chan error, ch <-chan []byte) (<-chan []byte, func(), error) {
	select {
	case err := <-acked:
		if err != nil {
			c.Close()
			return nil, nil, err
		}
	case <-ctx.Done():
		c.Close()
		return nil, nil, ctx.Err()
	}
	return ch, func() { c.Close() }, nil
}
