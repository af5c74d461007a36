package report

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Chart is one PNG plot of series columns against the first column.
type Chart struct {
	File   string // e.g. "online.png"
	Title  string
	YLabel string
	// Lines are column names of the series.
	Lines []string
	// LogX plots against a logarithmic x axis (the sweep's log N).
	LogX bool
	// YMin, YMax fix the y range when YMax > YMin.
	YMin, YMax float64
	// NoMarkers draws lines only, even on a log x axis (dense curves).
	NoMarkers bool
}

// plotSize of every PNG.
const (
	plotW = 7 * vg.Inch
	plotH = 3.6 * vg.Inch
)

// Plot draws c from s into path.
func Plot(s *Series, c Chart, xLabel, path string) error {
	p := plot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = c.YLabel
	p.Add(plotter.NewGrid())
	if c.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	drawn := 0
	for i, name := range c.Lines {
		col := s.Col(name)
		if col < 0 {
			return fmt.Errorf("plot %s: no column %q", c.File, name)
		}
		var pts plotter.XYs
		for _, row := range s.Rows {
			x, y := row[0], row[col]
			if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(y, 0) || (c.LogX && x <= 0) {
				continue
			}
			pts = append(pts, plotter.XY{X: x, Y: y})
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", c.File, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		if (c.LogX || len(pts) < 30) && !c.NoMarkers {
			sc, err := plotter.NewScatter(pts)
			if err == nil {
				sc.Color = plotutil.Color(i)
				p.Add(sc)
			}
		}
		p.Legend.Add(name, l)
		drawn++
	}
	if drawn == 0 {
		return errNothingToPlot
	}
	if c.YMax > c.YMin {
		p.Y.Min, p.Y.Max = c.YMin, c.YMax
	}
	return Save(p, path)
}

// Save writes p as a PNG of the common size to path, with its legend in a
// strip below the axes rather than over the data: a legend drawn inside the
// plot covered the lines of ratio plots, whose values sit at the top.
func Save(p *plot.Plot, path string) error {
	legend := p.Legend
	p.Legend = plot.NewLegend()
	defer func() { p.Legend = legend }()
	strip := legend.Rectangle(draw.Canvas{}).Size().Y
	if strip > 0 {
		strip += vg.Points(8)
	}
	c, err := draw.NewFormattedCanvas(plotW, plotH+strip, "png")
	if err != nil {
		return err
	}
	dc := draw.New(c)
	above := draw.Crop(dc, 0, 0, strip, 0)
	p.Draw(above)
	if strip > 0 {
		// Left-aligned with the data area, just under the x axis.
		below := draw.Crop(dc, 0, 0, 0, -plotH)
		below.Min.X = p.DataCanvas(above).Min.X
		legend.Top, legend.Left = true, true
		legend.YOffs = -vg.Points(4)
		legend.Draw(below)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = c.WriteTo(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// PlotCDF draws the empirical distribution function of xs.
func PlotCDF(xs []float64, title, xLabel, path string) error {
	if len(xs) == 0 {
		return errNothingToPlot
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	// At most 2000 points: enough for a smooth curve, small PNGs.
	step := max(1, len(s)/2000)
	var pts plotter.XYs
	for i := 0; i < len(s); i += step {
		pts = append(pts, plotter.XY{X: s[i], Y: float64(i+1) / float64(len(s))})
	}
	pts = append(pts, plotter.XY{X: s[len(s)-1], Y: 1})
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = "fraction ≤ x"
	p.Add(plotter.NewGrid())
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Color = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Y.Min, p.Y.Max = 0, 1
	return Save(p, path)
}
