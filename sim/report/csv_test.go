package report

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCSVRoundTrip(t *testing.T) {
	s := NewSeries("t", "a", "b")
	s.Add(1, 0.5, math.NaN())
	s.Add(2, 1e9, 3)
	var buf bytes.Buffer
	if err := s.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Columns, ",") != "t,a,b" || len(got.Rows) != 2 {
		t.Fatalf("got %v, %d rows", got.Columns, len(got.Rows))
	}
	if !math.IsNaN(got.Rows[0][2]) || got.Rows[1][1] != 1e9 || got.Rows[0][1] != 0.5 {
		t.Errorf("rows %v", got.Rows)
	}
	if _, err := ReadCSV(strings.NewReader("t,a\n1,x\n")); err == nil {
		t.Error("a cell that is not a number: no error")
	}
}

// The legend goes below the axes: the image grows by its strip, and a
// plot without a legend keeps the common size.
func TestLegendBelowPlot(t *testing.T) {
	dir := t.TempDir()
	s := NewSeries("t", "a", "b")
	s.Add(1, 1, 1)
	s.Add(2, 1, 0.99)
	legend := filepath.Join(dir, "l.png")
	if err := Plot(s, Chart{File: "l.png", Lines: []string{"a", "b"}, YMin: 0, YMax: 1.02}, "t", legend); err != nil {
		t.Fatal(err)
	}
	cdf := filepath.Join(dir, "c.png")
	if err := PlotCDF([]float64{1, 2, 3}, "cdf", "ms", cdf); err != nil {
		t.Fatal(err)
	}
	hl, hc := pngHeight(t, legend), pngHeight(t, cdf)
	if hl <= hc {
		t.Errorf("plot with a legend is %d px high, one without %d: no strip for the legend", hl, hc)
	}
}

func pngHeight(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("%s: not a PNG", path)
	}
	return int(b[20])<<24 | int(b[21])<<16 | int(b[22])<<8 | int(b[23])
}
