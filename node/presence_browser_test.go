package node

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/immense-p2p/immense/webrtc"
)

// presencePage follows a room through the JS client and shows its
// members (window.members()).
const presencePage = `<!doctype html><script type="module">
import { connect } from "./client.js";
const q = new URLSearchParams(location.search);
const client = connect(q.get("peer"), { token: q.get("token"), reconnect: { initialDelay: 100, maxDelay: 500 } });
window.members = () => client.members(q.get("room")).map((m) => m.id).sort().join(",");
client.subscribe(q.get("room"), () => {});
</script>`

// TestBrowserPresence: three browsers on two peers follow a room with
// presence; every one sees the same three members within the bound (3
// announcement intervals), a browser that leaves is gone from the
// others' view, and so is one whose peer dies.
func TestBrowserPresence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	secret := []byte("presence-test-secret-of-32-bytes!")
	peers, servers := loopbackNet(t, 2, func(c *Config) {
		c.Presence = PresenceConfig{Topics: []string{"test/*"}, Interval: time.Second}
		c.Browsers.InsecureNoAuth = false
		c.Browsers.Secret = secret
	})
	const room = "test/presence"
	token := func(sub string) string {
		now := time.Now()
		tok, err := webrtc.Mint(secret, webrtc.Claims{Subject: sub, IssuedAt: now, ExpiresAt: now.Add(time.Hour), Read: []string{"test/*"}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	page := pageServer(t, "/presence.html", presencePage)
	// Browsers of their own: a background tab's timers are throttled.
	alice, bob, carol := browser(t), browser(t), browser(t)
	open := func(tab context.Context, who string, peer int) {
		t.Helper()
		u := fmt.Sprintf("%s/presence.html?room=%s&peer=%s&token=%s", page.URL, room, url.QueryEscape(servers[peer].URL()), token(who))
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(ctx, chromedp.Navigate(u)); err != nil {
			t.Fatalf("%s opens the page: %v", who, err)
		}
	}
	sees := func(tab context.Context, who, want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		var ok bool
		if err := chromedp.Run(ctx, chromedp.Poll(fmt.Sprintf(`window.members && window.members() === %q`, want), &ok, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			var got string
			ectx, cancel := context.WithTimeout(tab, 5*time.Second)
			defer cancel()
			chromedp.Run(ectx, chromedp.Evaluate(`window.members ? window.members() : "(no page)"`, &got))
			t.Fatalf("%s sees %q, want %q: %v", who, got, want, err)
		}
	}
	open(alice, "alice", 0)
	open(bob, "bob", 0)
	open(carol, "carol", 1)
	all := "token:alice,token:bob,token:carol"
	sees(alice, "alice", all)
	sees(bob, "bob", all)
	sees(carol, "carol", all)

	// carol leaves the page.
	ctx, cancel := context.WithTimeout(carol, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	sees(alice, "alice", "token:alice,token:bob")
	sees(bob, "bob", "token:alice,token:bob")
	if got, _ := peers[0].Presence(room); len(got) != 2 {
		t.Errorf("peer a sees %v after carol left", got)
	}

	// carol comes back, then her peer dies.
	open(carol, "carol", 1)
	sees(alice, "alice", all)
	peers[1].Close()
	sees(alice, "alice", "token:alice,token:bob")
	sees(bob, "bob", "token:alice,token:bob")
}
