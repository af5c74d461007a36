package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
)

// Series is a time series: one row per sample, the first column the time.
// Missing values are NaN and written as empty CSV cells.
type Series struct {
	Columns []string
	Rows    [][]float64
}

// NewSeries returns an empty series with the given columns.
func NewSeries(columns ...string) *Series { return &Series{Columns: columns} }

// Add appends a row; it must have one value per column.
func (s *Series) Add(row ...float64) {
	if len(row) != len(s.Columns) {
		panic(fmt.Sprintf("report: row of %d values for %d columns", len(row), len(s.Columns)))
	}
	s.Rows = append(s.Rows, row)
}

// Col returns the index of column name, or -1.
func (s *Series) Col(name string) int {
	for i, c := range s.Columns {
		if c == name {
			return i
		}
	}
	return -1
}

// WriteCSV writes the series with a header line.
func (s *Series) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(s.Columns); err != nil {
		return err
	}
	rec := make([]string, len(s.Columns))
	for _, row := range s.Rows {
		for i, v := range row {
			if math.IsNaN(v) {
				rec[i] = ""
			} else {
				rec[i] = strconv.FormatFloat(v, 'g', 8, 64)
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

type seriesJSON struct {
	Columns []string     `json:"columns"`
	Rows    [][]*float64 `json:"rows"`
}

// MarshalJSON writes missing values (NaN) as null.
func (s *Series) MarshalJSON() ([]byte, error) {
	out := seriesJSON{Columns: s.Columns, Rows: make([][]*float64, len(s.Rows))}
	for i, row := range s.Rows {
		out.Rows[i] = make([]*float64, len(row))
		for j, v := range row {
			out.Rows[i][j] = F(v)
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *Series) UnmarshalJSON(b []byte) error {
	var in seriesJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	s.Columns, s.Rows = in.Columns, make([][]float64, len(in.Rows))
	for i, row := range in.Rows {
		s.Rows[i] = make([]float64, len(row))
		for j, v := range row {
			s.Rows[i][j] = math.NaN()
			if v != nil {
				s.Rows[i][j] = *v
			}
		}
	}
	return nil
}
