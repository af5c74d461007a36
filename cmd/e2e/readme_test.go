package e2e

import (
	"bufio"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/webrtc"
)

// repoRoot is the repository's top directory, from cmd/e2e.
const repoRoot = "../.."

// readmeBlock returns the fenced block of README.md after the comment
// <!-- e2e:name ... -->, its lines unindented.
func readmeBlock(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- e2e:"+name+" ")
	if !ok {
		t.Fatalf("README.md has no <!-- e2e:%s --> marker", name)
	}
	_, rest, _ = strings.Cut(rest, "```sh\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md: no fenced block after the e2e:%s marker", name)
	}
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// demoTopics returns the topics the demo page uses, as its script names
// them.
func demoTopics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "webrtc", "demo", "app.js"))
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, m := range regexp.MustCompile(`"(demo/[a-z]+)"`).FindAllStringSubmatch(string(b), -1) {
		if !slices.Contains(topics, m[1]) {
			topics = append(topics, m[1])
		}
	}
	if len(topics) == 0 {
		t.Fatal("no demo/... topic found in webrtc/demo/app.js")
	}
	return topics
}

// devnet is a running peer --devnet process and what its banner said.
type devnet struct {
	*proc
	dir   string
	token string
	urls  []string // peer1, peer2...
}

// startDevnet runs peer --devnet n on free ports and reads its banner,
// which it prints once every node has joined.
func startDevnet(t *testing.T, n int) *devnet {
	t.Helper()
	peerBin, _ := binaries(t)
	d := &devnet{dir: t.TempDir()}
	banner := make(chan []string, 1)
	cmd := exec.Command(peerBin, "--devnet", fmt.Sprint(n), "--data-dir", d.dir, "--http", "127.0.0.1:0", "--log-format", "json")
	d.proc = follow(t, "devnet", cmd, func(stdout io.Reader) {
		var lines []string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.HasPrefix(sc.Text(), "Ctrl-C stops the devnet") {
				banner <- lines
			}
		}
	})
	var lines []string
	select {
	case lines = <-banner:
	case <-d.done:
		t.Fatalf("devnet exited; logs:\n%s", d.dump())
	case <-time.After(120 * time.Second):
		t.Fatalf("devnet printed no banner; logs:\n%s", d.dump())
	}
	readyLine := regexp.MustCompile(`^Immense devnet ready in [0-9.]+ s`)
	peerLine := regexp.MustCompile(`^\s+peer\d+\s+(http://\S+)`)
	ready := 0
	for _, l := range lines {
		if readyLine.MatchString(l) {
			ready++
		}
		if m := peerLine.FindStringSubmatch(l); m != nil {
			d.urls = append(d.urls, m[1])
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "export IMMENSE_TOKEN="); ok {
			d.token = v
		}
	}
	if ready != 1 || len(d.urls) != n-1 || d.token == "" {
		t.Fatalf("banner: %d ready lines, %d peer URLs, token %q; want 1, %d and a token:\n%s", ready, len(d.urls), d.token, n-1, strings.Join(lines, "\n"))
	}
	for _, u := range d.urls {
		apiTokens.Store(strings.TrimPrefix(u, "http://"), d.token)
	}
	return d
}

// TestDevnetReady: peer --devnet prints its one "ready" banner only once
// every peer has joined: each answers /v1/status joined and /readyz 200
// the moment the banner is out.
func TestDevnetReady(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	d := startDevnet(t, 4)
	for _, u := range d.urls {
		resp, err := http.Get(u + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Joined    bool   `json:"joined"`
			JoinState string `json:"join_state"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if !st.Joined {
			t.Errorf("%s: not joined when the banner was printed: %q", u, st.JoinState)
		}
		if code, body := readyz(t, u); code != http.StatusOK {
			t.Errorf("%s: /readyz %d %v when the banner was printed", u, code, body)
		}
	}
	d.stop()
}

// TestReadmeCommands runs README.md's devnet commands, as a newcomer pastes
// them, against a devnet (README's ports replaced by the devnet's), and
// checks README's token covers the topics the demo page uses, so that
// README, devnet and demo page cannot drift apart again.
func TestReadmeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	peerBin, _ := binaries(t)
	topics := demoTopics(t)
	d := startDevnet(t, 5)

	lines := readmeBlock(t, "readme-devnet")
	script := strings.Join(lines, "\n")
	for _, m := range regexp.MustCompile(`/v1/topics/([^\s"']+)`).FindAllStringSubmatch(script, -1) {
		if !slices.Contains(topics, m[1]) {
			t.Errorf("README publishes or follows %q, which the demo page (topics %q) does not show", m[1], topics)
		}
	}
	for i, u := range d.urls {
		script = strings.ReplaceAll(script, fmt.Sprintf("http://127.0.0.1:%d", 8080+i), u)
	}
	// The follow (curl -N ... &) runs until the script ends.
	cmd := exec.Command("bash", "-c", "trap 'kill $(jobs -p) 2>/dev/null' EXIT\n"+script)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "IMMENSE_TOKEN="+d.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README commands: %v\n%s", err, out)
	}
	for _, want := range []string{`"topic":"demo/chat"`, `"joined":true`, `"target_met"`, "# Immense", `"readable":true`, "immense_"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("README commands' output lacks %q:\n%.3000s", want, out)
		}
	}
	if i := strings.Index(string(out), `{"error":"`); i >= 0 {
		t.Errorf("README commands answered an error: %.300s", out[i:])
	}

	// README's token, minted with the devnet's app key, covers the demo
	// page's topics.
	tokLines := readmeBlock(t, "readme-token")
	if len(tokLines) != 1 || !strings.HasPrefix(tokLines[0], "peer token ") {
		t.Fatalf("README token block: %q, want one peer token command", tokLines)
	}
	keyFile := filepath.Join(d.dir, "app.key")
	args := strings.Fields(strings.NewReplacer("'", "", " app.key", " "+keyFile).Replace(tokLines[0]))[1:]
	tokOut, err := exec.Command(peerBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%q: %v\n%s", tokLines[0], err, tokOut)
	}
	k, err := erasure.LoadAppKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := webrtc.NewVerifier(nil, []ed25519.PublicKey{k.TopicKey().Public().(ed25519.PublicKey)}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(string(tokOut)), time.Now())
	if err != nil {
		t.Fatalf("README's token: %v", err)
	}
	for _, topic := range topics {
		if !c.CanRead(topic) || !c.CanWrite(topic) {
			t.Errorf("README's token (read %q, write %q) does not cover the demo page's topic %q", c.Read, c.Write, topic)
		}
	}
	d.stop()
}
