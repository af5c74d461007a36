package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
)

// ReadCSV reads what WriteCSV wrote: a header line, then one row per
// sample, empty cells as NaN.
func ReadCSV(r io.Reader) (*Series, error) {
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read time series: %w", err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("read time series: no header")
	}
	s := NewSeries(recs[0]...)
	for i, rec := range recs[1:] {
		row := make([]float64, len(rec))
		for j, cell := range rec {
			row[j] = math.NaN()
			if cell == "" {
				continue
			}
			if row[j], err = strconv.ParseFloat(cell, 64); err != nil {
				return nil, fmt.Errorf("read time series: row %d, column %s: %q is not a number", i+1, s.Columns[j], cell)
			}
		}
		s.Rows = append(s.Rows, row)
	}
	return s, nil
}
