package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// pageWatch collects what a Chromium tab reports: exceptions, console
// errors and warnings, failed loads and error responses (problems), and
// the URL of every request the page makes.
type pageWatch struct {
	mu       sync.Mutex
	problems []string
	requests []string
}

// watchTab opens a new tab of browser b (with its own sessionStorage) and
// starts watching it.
func watchTab(t *testing.T, b context.Context) (context.Context, *pageWatch) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b)
	t.Cleanup(cancel)
	w := &pageWatch{}
	chromedp.ListenTarget(ctx, func(ev any) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			w.problems = append(w.problems, "exception: "+e.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeWarning || e.Type == runtime.APITypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				w.problems = append(w.problems, fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " ")))
			}
		case *log.EventEntryAdded:
			if e.Entry.Level == log.LevelError || e.Entry.Level == log.LevelWarning {
				w.problems = append(w.problems, fmt.Sprintf("log %s (%s): %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		case *network.EventRequestWillBeSent:
			w.requests = append(w.requests, e.Request.URL)
		case *network.EventResponseReceived:
			if e.Response.Status >= 400 {
				w.problems = append(w.problems, fmt.Sprintf("HTTP %d: %s", e.Response.Status, e.Response.URL))
			}
		case *network.EventLoadingFailed:
			w.problems = append(w.problems, fmt.Sprintf("loading failed: %s (%s)", e.ErrorText, e.Type))
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	return ctx, w
}

func (w *pageWatch) snapshot() (problems, requests []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.problems...), append([]string(nil), w.requests...)
}

// run runs actions on tab with a time limit, failing the test with what
// the page shows if they fail.
func runTab(t *testing.T, tab context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 60*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var state, errText string
		sctx, scancel := context.WithTimeout(tab, 5*time.Second)
		defer scancel()
		chromedp.Run(sctx, chromedp.Text("#state", &state, chromedp.ByID), chromedp.TextContent("#error", &errText, chromedp.ByID))
		t.Fatalf("%s: %v (state %q, error %q)", what, err, state, errText)
	}
}

// TestDashboard: in Chromium, the dashboard of a peer opened with the
// control API token in its URL fragment moves the token out of the address
// bar, shows the node, its peers and storage, and a topic's message rate
// rising above 0 while messages are published, with no console error and
// no failed request. Without a token it says so and asks for nothing; with
// a wrong one it says 401.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	peers, servers := loopbackNet(t, 3, nil)
	nd, base := peers[0], servers[0].URL()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const topic = "dash/chat"
	msgs, err := peers[1].Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range msgs { // closed when ctx ends
		}
	}()
	pctx, pcancel := context.WithTimeout(ctx, 60*time.Second)
	if _, err := nd.Put(pctx, "dashboard-demo", []byte(strings.Repeat("state shown on the dashboard\n", 1000))); err != nil {
		t.Fatalf("put: %v", err)
	}
	pcancel()

	b := browser(t)
	shot := os.Getenv("IMMENSE_DASHBOARD_SCREENSHOT")

	// With the token in the fragment.
	tab, watch := watchTab(t, b)
	var actions []chromedp.Action
	if shot != "" {
		actions = append(actions, chromedp.EmulateViewport(1400, 1000))
	}
	actions = append(actions,
		chromedp.Navigate(base+"/dashboard/#token="+nd.APIToken()),
		chromedp.WaitVisible(`#state[data-state="live"]`, chromedp.ByQuery))
	runTab(t, tab, "open the dashboard with a token", actions...)
	var where struct {
		Href   string `json:"href"`
		Stored string `json:"stored"`
		ID     string `json:"id"`
	}
	runTab(t, tab, "read the page", chromedp.Evaluate(`({href: location.href, stored: sessionStorage.getItem("immense.dashboard.token"), id: document.getElementById("node-id").textContent})`, &where))
	if strings.Contains(where.Href, nd.APIToken()) || strings.Contains(where.Href, "#") {
		t.Errorf("the token stayed in the address bar: %s", where.Href)
	}
	if where.Stored != nd.APIToken() {
		t.Errorf("sessionStorage holds %q, want the token", where.Stored)
	}
	if where.ID != nd.ID().String() {
		t.Errorf("node id shown: %q, want %s", where.ID, nd.ID())
	}

	// Traffic: publish until the page shows the topic's rate above 0.
	traffic, stopTraffic := context.WithCancel(ctx)
	published := make(chan struct{})
	go func() {
		defer close(published)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-traffic.Done():
				return
			case <-tick.C:
				nd.Publish(traffic, topic, fmt.Appendf(nil, "message %d", i))
			}
		}
	}()
	rising := fmt.Sprintf(`(() => { const r = document.querySelector('tr[data-topic=%q]'); return !!r && Number(r.dataset.rate) > 0; })()`, topic)
	var moved bool
	runTab(t, tab, "wait for the topic rate to rise", chromedp.Poll(rising, &moved),
		// and for the other panels' figures: a peer row, the held value.
		chromedp.WaitVisible(`#peers-body tr`, chromedp.ByQuery),
		chromedp.WaitVisible(`#tracked-body tr[data-key="dashboard-demo"]`, chromedp.ByQuery))
	if shot != "" {
		// Let the charts fill in for the picture.
		var full bool
		var png []byte
		runTab(t, tab, "screenshot", chromedp.Poll(`Number(document.body.dataset.samples) >= 40`, &full, chromedp.WithPollingTimeout(2*time.Minute)),
			chromedp.FullScreenshot(&png, 100))
		if !filepath.IsAbs(shot) {
			shot = filepath.Join("..", shot) // relative to the repository root
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", shot)
	}
	stopTraffic()
	<-published
	var rate, peersShown, rt string
	runTab(t, tab, "read the figures",
		chromedp.Text(fmt.Sprintf(`tr[data-topic=%q] .rate-published`, topic), &rate, chromedp.ByQuery),
		chromedp.Text("#ov-peers", &peersShown, chromedp.ByID),
		chromedp.Text("#ov-rt", &rt, chromedp.ByID))
	t.Logf("dashboard: %s published/s on %s, %s peers, routing table %s", rate, topic, peersShown, rt)
	if peersShown == "0" || peersShown == "-" {
		t.Errorf("connected peers shown: %q", peersShown)
	}
	problems, requests := watch.snapshot()
	for _, p := range problems {
		t.Errorf("with the token: %s", p)
	}
	for _, u := range requests {
		if strings.Contains(u, nd.APIToken()) {
			t.Errorf("a request carried the token in its URL: %s", u)
		}
	}

	// Without a token: it says one is needed, and asks for no data.
	watch, _, msg := openDashboard(t, b, base+"/dashboard/", "token-needed")
	if !strings.Contains(msg, "Token needed") {
		t.Errorf("without a token the page says %q", msg)
	}
	problems, requests = watch.snapshot()
	for _, p := range problems {
		t.Errorf("without a token: %s", p)
	}
	for _, u := range requests {
		if strings.Contains(u, "/v1/") || strings.Contains(u, "/metrics") {
			t.Errorf("without a token the page asked for %s", u)
		}
	}

	// With a wrong token: 401, said clearly; nothing else goes wrong.
	watch, state, msg := openDashboard(t, b, base+"/dashboard/#token=not-the-token", "unauthorized")
	if !strings.Contains(state, "401") || !strings.Contains(msg, "401 Unauthorized") {
		t.Errorf("with a wrong token the page says %q, %q", state, msg)
	}
	problems, _ = watch.snapshot()
	for _, p := range problems {
		if !strings.Contains(p, "401") {
			t.Errorf("with a wrong token: %s", p)
		}
	}
}

// openDashboard opens url in a new tab of b, waits for the page's state
// to be want, and returns what it said: the state badge and the message
// of its token form.
func openDashboard(t *testing.T, b context.Context, url, want string) (watch *pageWatch, state, msg string) {
	t.Helper()
	tab, watch := watchTab(t, b)
	runTab(t, tab, "open "+url,
		chromedp.Navigate(url),
		chromedp.WaitVisible(fmt.Sprintf(`#state[data-state=%q]`, want), chromedp.ByQuery),
		chromedp.Text("#state", &state, chromedp.ByID),
		chromedp.Text("#auth-message", &msg, chromedp.ByID))
	return watch, state, msg
}

// TestDashboardEndpoints: the dashboard's files are served without a
// token, under the control API's Host check and a strict
// Content-Security-Policy; its data endpoints need the token, and answer
// JSON with it.
func TestDashboardEndpoints(t *testing.T) {
	peers, servers := loopbackNet(t, 2, nil)
	nd, base := peers[0], servers[0].URL()
	get := func(path, token, host string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, f := range []struct{ path, ctype string }{
		{"/dashboard/", "text/html"}, {"/dashboard/dashboard.js", "text/javascript"}, {"/dashboard/dashboard.css", "text/css"},
	} {
		resp := get(f.path, "", "")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), f.ctype) {
			t.Errorf("GET %s: %s %s, want 200 %s", f.path, resp.Status, resp.Header.Get("Content-Type"), f.ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", f.path, csp)
		}
	}
	if resp := get("/dashboard/", "", "evil.test"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /dashboard/ for Host evil.test: %s, want 403", resp.Status)
	}
	if resp := get("/dashboard/nothing.js", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /dashboard/nothing.js: %s, want 404", resp.Status)
	}
	for _, path := range []string{"/v1/peers", "/v1/storage"} {
		if resp := get(path, "", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %s, want 401", path, resp.Status)
		}
		if resp := get(path, "wrong-token", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %s, want 401", path, resp.Status)
		}
	}
	var pr PeersReport
	if resp := get("/v1/peers", nd.APIToken(), ""); resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&pr) != nil {
		t.Fatalf("GET /v1/peers: %s", resp.Status)
	}
	if pr.Total < 1 || len(pr.Peers) != pr.Total || len(pr.Peers[0].Transports) == 0 || !pr.Peers[0].Direct {
		t.Errorf("GET /v1/peers: %+v, want the bootstrap node and the other peer, direct", pr)
	}
	var sr StorageReport
	if resp := get("/v1/storage", nd.APIToken(), ""); resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&sr) != nil {
		t.Fatalf("GET /v1/storage: %s", resp.Status)
	}
	if sr.Quota != nd.cfg.StorageQuota || sr.Tracked == nil || sr.Held == nil {
		t.Errorf("GET /v1/storage: %+v", sr)
	}
}
