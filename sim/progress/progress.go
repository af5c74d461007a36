// Package progress draws a progress bar for long simulation runs on
// stderr: redrawn in place on a terminal, one line per 10% otherwise (CI
// logs, redirected output).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// Bar is a progress bar. A nil *Bar is valid and draws nothing.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	label    string
	start    time.Time
	drawn    time.Time
	lastTen  int
	finished bool
	now      func() time.Time
}

// New returns a bar writing to f (usually os.Stderr).
func New(f *os.File, label string) *Bar {
	return &Bar{w: f, tty: isatty.IsTerminal(f.Fd()), label: label, start: time.Now(), lastTen: -1, now: time.Now}
}

// NewWriter returns a bar writing line-by-line to w (tests).
func NewWriter(w io.Writer, label string) *Bar {
	return &Bar{w: w, label: label, start: time.Now(), lastTen: -1, now: time.Now}
}

// redrawEvery limits terminal redraws.
const redrawEvery = 200 * time.Millisecond

// Set reports progress frac in [0, 1] and a short detail (e.g. "day 12 of
// 365").
func (b *Bar) Set(frac float64, detail string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	frac = min(max(frac, 0), 1)
	now := b.now()
	if b.tty {
		if now.Sub(b.drawn) < redrawEvery && frac < 1 {
			return
		}
		b.drawn = now
		const width = 30
		full := int(frac * width)
		bar := strings.Repeat("=", full)
		if full < width {
			bar += ">" + strings.Repeat(" ", width-full-1)
		}
		fmt.Fprintf(b.w, "\r%s [%s] %3.0f%% %s %s\x1b[K", b.label, bar, 100*frac, detail, b.eta(now, frac))
		return
	}
	if ten := int(frac * 10); ten > b.lastTen {
		b.lastTen = ten
		fmt.Fprintf(b.w, "%s %3.0f%% %s %s\n", b.label, 100*frac, detail, b.eta(now, frac))
	}
}

func (b *Bar) eta(now time.Time, frac float64) string {
	el := now.Sub(b.start)
	if frac <= 0 || frac >= 1 {
		return fmt.Sprintf("(%v)", el.Round(time.Second))
	}
	left := time.Duration(float64(el) * (1 - frac) / frac)
	return fmt.Sprintf("(%v, ~%v left)", el.Round(time.Second), left.Round(time.Second))
}

// Done finishes the bar.
func (b *Bar) Done(detail string) {
	if b == nil {
		return
	}
	b.Set(1, detail)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.finished && b.tty {
		fmt.Fprintln(b.w)
	}
	b.finished = true
}
