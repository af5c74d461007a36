// Package browsertest holds what the project's browser tests share: how to
// start Debian's headless Chromium, with its own profile, on a machine with
// no network but loopback.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// Options returns the allocator options for a headless Chromium of the
// test's own, plus extra. It skips the test if chromium is not installed
// (.ci/run installs it).
func Options(t testing.TB, extra ...chromedp.ExecAllocatorOption) []chromedp.ExecAllocatorOption {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt-get install chromium); .ci/run installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profileDir(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		// No background traffic: this machine reaches nothing but
		// loopback, and refused connections slow Chromium down.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// WebRTC on loopback: offer 127.0.0.1 candidates, and do not hide
		// host addresses behind mDNS names.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
	)
	return append(opts, extra...)
}

// Start starts a headless Chromium of the test's own (Options plus extra)
// under parent and returns the context of its first tab, which owns the
// browser: callers' per-step timeouts must derive from it, not replace it.
// The browser is closed at the test's cleanup.
func Start(t testing.TB, parent context.Context, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	actx, cancel := chromedp.NewExecAllocator(parent, Options(t, extra...)...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// profileDir is a Chromium profile directory, removed after the test (a
// second time if Chromium's last writes at exit raced the first removal,
// which t.TempDir would report as a failure).
func profileDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "immense-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.RemoveAll(dir) != nil {
			os.RemoveAll(dir)
		}
	})
	return dir
}
