package benchplot

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/immense-p2p/immense/sim/report"
)

// Draw writes f as a PNG into dir: each series a line through the mean of
// its runs per group, every run a dot, the baseline a dashed line at 1.
func Draw(f Figure, dir string) error {
	p := plot.New()
	p.Title.Text = f.Title
	p.Y.Label.Text = f.YLabel
	p.Add(plotter.NewGrid())
	if f.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	// Series sit side by side around each group's position, so that
	// dots of equal ratios do not hide each other.
	const spread = 0.3
	step := 0.0
	if len(f.Series) > 1 {
		step = spread / float64(len(f.Series)-1)
	}
	lo, hi := 1.0, 1.0
	for i, s := range f.Series {
		dx := -spread/2 + float64(i)*step
		if len(f.Series) == 1 {
			dx = 0
		}
		var means, dots plotter.XYs
		for g, vs := range s.Values {
			if len(vs) == 0 {
				continue
			}
			sum := 0.0
			for _, v := range vs {
				sum += v
				dots = append(dots, plotter.XY{X: float64(g) + dx, Y: v})
				lo, hi = min(lo, v), max(hi, v)
			}
			means = append(means, plotter.XY{X: float64(g) + dx, Y: sum / float64(len(vs))})
		}
		if len(means) == 0 {
			continue
		}
		l, err := plotter.NewLine(means)
		if err != nil {
			return fmt.Errorf("plot %s: %w", f.File, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		sc, err := plotter.NewScatter(dots)
		if err != nil {
			return fmt.Errorf("plot %s: %w", f.File, err)
		}
		sc.Color = plotutil.Color(i)
		sc.Shape = plotutil.Shape(i)
		sc.Radius = vg.Points(3)
		p.Add(l, sc)
		p.Legend.Add(s.Name, l, sc)
	}
	base, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(f.Groups)) - 0.5, Y: 1}})
	if err != nil {
		return err
	}
	base.Color = color.Gray{Y: 0x60}
	base.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(base)
	p.Legend.Add("baseline (1)", base)
	p.X.Min, p.X.Max = -0.5, float64(len(f.Groups))-0.5
	var ticks plot.ConstantTicks
	for g, name := range f.Groups {
		ticks = append(ticks, plot.Tick{Value: float64(g), Label: name})
	}
	p.X.Tick.Marker = ticks
	// Room above and below the dots, on the scale in use.
	if f.LogY {
		p.Y.Min, p.Y.Max = lo/1.5, hi*1.5
	} else {
		pad := math.Max((hi-lo)*0.1, 0.05)
		p.Y.Min, p.Y.Max = math.Max(0, lo-pad), hi+pad
	}
	return report.Save(p, filepath.Join(dir, f.File))
}

// Run parses the benchmark outputs in files and draws every figure they
// support into dir, returning the files written.
func Run(files []string, dir string) ([]string, error) {
	var rs []Result
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		got, err := Parse(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		rs = append(rs, got...)
	}
	figs := Figures(rs)
	if len(figs) == 0 {
		return nil, fmt.Errorf("no ratios to plot in %v", files)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create output dir: %w", err)
	}
	var out []string
	for _, f := range figs {
		if err := Draw(f, dir); err != nil {
			return out, err
		}
		out = append(out, filepath.Join(dir, f.File))
	}
	return out, nil
}
