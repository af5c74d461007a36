package e2e

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWebSocketBrowser: a real peer process with an app key admits a
// browser over a WebSocket (GET /v1/ws) with an EdDSA token made by peer
// token: the browser receives what the control API publishes, and what it
// publishes reaches an SSE subscriber as the browser's. A bad token is
// refused with close code 4401.
func TestWebSocketBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, _ := binaries(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "app.key")
	if out, err := exec.Command(peerBin, "keygen", "--out", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("peer keygen: %v\n%s", err, out)
	}
	out, err := exec.Command(peerBin, "token", "--app-key", keyFile, "--sub", "alice", "--read", "chat/*", "--write", "chat/*").Output()
	if err != nil {
		t.Fatalf("peer token: %v", err)
	}
	token := strings.TrimSpace(string(out))
	p := start(t, "peer", peerBin, append([]string{"--data-dir", filepath.Join(dir, "data"), "--app-key", keyFile}, loopback...)...)
	wsURL := "ws" + strings.TrimPrefix(p.info.HTTP, "http") + "/v1/ws"

	dial := func(tok string) (*websocket.Conn, error) {
		c, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.WriteMessage(websocket.TextMessage, []byte(tok)); err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, b, err := c.ReadMessage(); err != nil {
			return nil, err
		} else if len(b) != 6 || b[1] != 5 { // version, ACK, request 0
			t.Fatalf("first frame %x, want ACK 0", b)
		}
		return c, nil
	}
	if _, err := dial("not-a-token"); !websocket.IsCloseError(err, 4401) {
		t.Errorf("bad token: %v, want close 4401", err)
	}
	c, err := dial(token)
	if err != nil {
		t.Fatal(err)
	}
	// SUBSCRIBE chat/room (request 1): version 1, type 1, req, str8 topic.
	frame := func(typ byte, req uint32, topic string, payload []byte) []byte {
		b := []byte{1, typ, byte(req >> 24), byte(req >> 16), byte(req >> 8), byte(req), byte(len(topic))}
		b = append(b, topic...)
		if typ == 3 {
			n := len(payload)
			b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
			b = append(b, payload...)
		}
		return b
	}
	if err := c.WriteMessage(websocket.BinaryMessage, frame(1, 1, "chat/room", nil)); err != nil {
		t.Fatal(err)
	}
	next := func() []byte {
		t.Helper()
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := next(); len(b) != 6 || b[1] != 5 || b[5] != 1 {
		t.Fatalf("subscribe answered %x, want ACK 1", b)
	}
	s := subscribe(t, p.info.HTTP, "chat/room")
	if resp := publish(t, p.info.HTTP, "chat/room", "from the app"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %s", resp.Status)
	}
	s.expect(t, "sse", "from the app")
	if b := next(); b[1] != 4 || !strings.HasSuffix(string(b), "from the app") {
		t.Fatalf("the browser got %x, want the app's MESSAGE", b)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, frame(3, 2, "chat/room", []byte("from alice"))); err != nil {
		t.Fatal(err)
	}
	s.expect(t, "sse", "from alice")
}
