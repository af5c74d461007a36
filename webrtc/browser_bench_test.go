package webrtc

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/immense-p2p/immense/internal/browsertest"
)

// connectPage times, in the page, a data channel connection from
// connect() to the client's open event, then closes it.
const connectPage = `<!doctype html><meta charset="utf-8"><title>connect</title>
<script type="module">
import { connect } from "/client.js";
window.dial = async (token) => {
  const t0 = performance.now();
  const client = connect(location.origin, { token, transport: "webrtc" });
  await new Promise((resolve, reject) => {
    client.addEventListener("open", resolve, { once: true });
    setTimeout(() => reject(new Error("no open within 10 s")), 10000);
  });
  const ms = performance.now() - t0;
  client.close();
  return ms;
};
window.loaded = true;
</script>`

// BenchmarkBrowserConnect: how long Chromium takes from connect() to an
// open data channel, against an ICE-lite server (with and without the
// binding request it sends on a pair that passed, liteConn.hint) and one
// running pion's full ICE agent, in the same run. Reports the median and
// p90 of b.N connections per mode.
func BenchmarkBrowserConnect(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bctx := browsertest.Start(b, ctx)
	medians := map[string]float64{}
	for _, mode := range []string{"ice-lite", "ice-lite-no-hint", "full-ice"} {
		b.Run(mode, func(b *testing.B) {
			noLiteHints.Store(mode == "ice-lite-no-hint")
			defer noLiteHints.Store(false)
			e := newTestEnv(b, func(c *Config) { c.ICELite = mode != "full-ice" })
			mux := http.NewServeMux()
			mux.Handle(OfferPath, e.srv)
			mux.HandleFunc("/connect", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				fmt.Fprint(w, connectPage)
			})
			mux.Handle("/", DemoHandler())
			hs := httptest.NewServer(mux)
			defer hs.Close()
			tok := e.token([]string{"a"}, nil)
			var ok bool
			if err := chromedp.Run(bctx, chromedp.Navigate(hs.URL+"/connect"), chromedp.Poll(`window.loaded === true`, &ok)); err != nil {
				b.Fatal(err)
			}
			var ms []float64
			for b.Loop() {
				var d float64
				if err := chromedp.Run(bctx, chromedp.Evaluate(fmt.Sprintf(`dial(%q)`, tok), &d, awaitPromise)); err != nil {
					b.Fatal(err)
				}
				ms = append(ms, d)
			}
			slices.Sort(ms)
			medians[mode] = ms[len(ms)/2]
			b.ReportMetric(ms[len(ms)/2], "p50-ms")
			b.ReportMetric(ms[len(ms)*9/10], "p90-ms")
		})
	}
	if f := medians["full-ice"]; f > 0 {
		fmt.Printf("connect p50: ice-lite x%.2f, ice-lite without the hint x%.2f of full ICE\n", medians["ice-lite"]/f, medians["ice-lite-no-hint"]/f)
	}
}
