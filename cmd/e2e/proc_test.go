package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds cmd/peer and cmd/bootstrap once per test run.
func binaries(t *testing.T) (peer, bootstrap string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "immense-e2e-bin-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir+"/", "github.com/immense-p2p/immense/cmd/peer", "github.com/immense-p2p/immense/cmd/bootstrap").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "peer"), filepath.Join(binDir, "bootstrap")
}

func TestMain(m *testing.M) {
	// The nodes' control APIs need their bearer tokens (node/apiauth.go),
	// as an operator's curl does: requests through the default client carry
	// the token of the node they go to.
	http.DefaultClient.Transport = bearer{base: http.DefaultTransport, token: func(r *http.Request) string {
		tok, _ := apiTokens.Load(r.URL.Host)
		s, _ := tok.(string)
		return s
	}}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// apiTokens maps the host:port of a started node's HTTP API to its control
// API token.
var apiTokens sync.Map

// bearer adds the control API token that token finds for a request, unless
// the request carries an Authorization header of its own.
type bearer struct {
	base  http.RoundTripper
	token func(*http.Request) string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok := b.token(r); tok != "" && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return b.base.RoundTrip(r)
}

// dataDirToken returns the control API token in the data dir that args
// name (--data-dir), once the node has written it.
func dataDirToken(args []string) func(*http.Request) string {
	dir := ""
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			dir = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--data-dir="); ok {
			dir = v
		}
	}
	return func(*http.Request) string {
		if dir == "" {
			return ""
		}
		b, _ := os.ReadFile(filepath.Join(dir, "api-token"))
		return strings.TrimSpace(string(b))
	}
}

// info mirrors cli.Info (--info-file).
type info struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	HTTP   string   `json:"http"`
}

// proc is a running node process with JSON logs on stderr.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	info info
	done chan struct{}

	mu   sync.Mutex
	logs []map[string]any
	cond *sync.Cond
}

// start runs bin with args plus --info-file, --log-format json, and waits
// until it has printed its addresses (so its HTTP API is up).
func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	infoFile := filepath.Join(t.TempDir(), "info.json")
	args = append(args, "--info-file", infoFile, "--log-format", "json", "--log-level", "debug")
	cmd := exec.Command(bin, args...)
	firstLine := make(chan error, 1)
	p := follow(t, name, cmd, func(stdout io.Reader) {
		r := bufio.NewReader(stdout)
		_, err := r.ReadString('\n')
		firstLine <- err
		io.Copy(io.Discard, r)
	})
	select {
	case err := <-firstLine:
		if err != nil {
			t.Fatalf("%s: no address printed (%v); logs:\n%s", name, err, p.dump())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: did not start; logs:\n%s", name, p.dump())
	}
	b, err := os.ReadFile(infoFile)
	if err != nil {
		t.Fatalf("%s: info file: %v", name, err)
	}
	if err := json.Unmarshal(b, &p.info); err != nil {
		t.Fatalf("%s: info file: %v", name, err)
	}
	if u, err := url.Parse(p.info.HTTP); err == nil && u.Host != "" {
		apiTokens.Store(u.Host, dataDirToken(args)(nil))
	}
	return p
}

// follow starts cmd and follows it: its log lines on stderr (JSON, or
// kept as "msg" otherwise) go to p.logs; its stdout goes to onStdout, which
// must read it to the end (nil: discarded). p.done closes once the process
// has exited and both streams are read, so no last log line is lost. The
// process is killed in t.Cleanup, and its logs are saved to
// $IMMENSE_E2E_LOGDIR if set.
func follow(t *testing.T, name string, cmd *exec.Cmd, onStdout func(io.Reader)) *proc {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() {
		p.kill()
		if dir := os.Getenv("IMMENSE_E2E_LOGDIR"); dir != "" {
			os.WriteFile(filepath.Join(dir, t.Name()[strings.LastIndex(t.Name(), "/")+1:]+"-"+name+".log"), []byte(p.dump()), 0o644)
		}
	})
	if onStdout == nil {
		onStdout = func(r io.Reader) { io.Copy(io.Discard, r) }
	}
	var read sync.WaitGroup
	read.Go(func() { onStdout(stdout) })
	read.Go(func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				rec = map[string]any{"msg": sc.Text()}
			}
			p.mu.Lock()
			p.logs = append(p.logs, rec)
			p.cond.Broadcast()
			p.mu.Unlock()
		}
	})
	go func() {
		read.Wait() // Wait closes the pipes: read them to the end first
		cmd.Wait()
		close(p.done)
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	return p
}

func (p *proc) dump() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, l := range p.logs {
		fmt.Fprintf(&b, "  %v\n", l)
	}
	return b.String()
}

// waitLog blocks until the process has logged a record with message msg.
func (p *proc) waitLog(msg string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.AfterFunc(timeout, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer deadline.Stop()
	start := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for _, l := range p.logs {
			if l["msg"] == msg {
				return
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited while waiting for %q", p.name, msg)
		default:
		}
		if time.Since(start) >= timeout {
			p.mu.Unlock()
			logs := p.dump()
			p.mu.Lock()
			p.t.Fatalf("%s: no %q log within %v; logs:\n%s", p.name, msg, timeout, logs)
		}
		p.cond.Wait()
	}
}

// stop sends SIGTERM and checks the process exits cleanly within 5 s.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.t.Fatalf("%s: still running 5 s after SIGTERM", p.name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("%s: exit code %d after SIGTERM; logs:\n%s", p.name, code, p.dump())
	}
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// sse is an open Server-Sent Events stream.
type sse struct {
	events chan string // data of each event
	cancel context.CancelFunc
}

// subscribe opens GET /v1/topics/{topic} and returns once the node has
// subscribed.
func subscribe(t *testing.T, base, topic string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/topics/"+topic, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		t.Fatalf("subscribe %s: %s", base, resp.Status)
	}
	t.Cleanup(cancel)
	return readSSE(t, base, resp, cancel)
}

// readSSE checks that an SSE response opens with ": subscribed" and then
// delivers the data of each event on the returned stream.
func readSSE(t *testing.T, who string, resp *http.Response, cancel context.CancelFunc) *sse {
	t.Helper()
	s := &sse{events: make(chan string, 100), cancel: cancel}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != ": subscribed\n" {
		t.Fatalf("%s: subscribe: first line %q, %v", who, line, err)
	}
	go func() {
		defer resp.Body.Close()
		var data []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			case line == "" && data != nil:
				s.events <- strings.Join(data, "\n")
				data = nil
			}
		}
	}()
	return s
}

// expect waits for the next event and checks it is want. Events in stale
// are skipped: messages published before the stream opened that gossipsub
// may still deliver from its message cache.
func (s *sse) expect(t *testing.T, who, want string, stale ...string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case got := <-s.events:
			if slices.Contains(stale, got) {
				continue
			}
			if got != want {
				t.Fatalf("%s received %q, want %q", who, got, want)
			}
			return
		case <-deadline:
			t.Fatalf("%s: no message %q", who, want)
		}
	}
}

func publish(t *testing.T, base, topic, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(base+"/v1/topics/"+topic, "application/octet-stream", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

type status struct {
	PeerID           string `json:"peer_id"`
	ConnectedPeers   int    `json:"connected_peers"`
	RoutingTableSize int    `json:"routing_table_size"`
	DHTMode          string `json:"dht_mode"`
	Topics           []struct {
		Name  string `json:"name"`
		Peers int    `json:"peers"`
	} `json:"topics"`
}

func getStatus(t *testing.T, base string) status {
	t.Helper()
	resp, err := http.Get(base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitTopicPeers polls base's status until it knows at least n other
// subscribers of topic. Gossipsub announces subscriptions on its own
// schedule, and there is no event to wait on across processes.
func waitTopicPeers(t *testing.T, base, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, tp := range getStatus(t, base).Topics {
			if tp.Name == topic && tp.Peers >= n {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: fewer than %d peers on topic %q after 60 s", base, n, topic)
}
