package cli

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/immense-p2p/immense/internal/bytesize"
)

// Flag binds one command-line flag to one config field: a row of a
// command's flag table. Value parses the flag's text into the field, and
// formats the field's current value, which --help shows as the default.
// Bind a table to a preset and --help shows that preset's numbers; no
// "0 means the preset" is needed. The table is also what a config file or
// environment variables would fill, name by name.
type Flag struct {
	Name  string
	Usage string
	Value flag.Value
}

// Bind registers each flag of the table on fs.
func Bind(fs *flag.FlagSet, table ...Flag) {
	for _, f := range table {
		fs.Var(f.Value, f.Name, f.Usage)
	}
}

// PrintDefaults writes fs's flags as flag.PrintDefaults does, naming each
// flag's argument after its kind ("int", "size", "rate", "list"...) where
// the usage does not name it in backquotes.
func PrintDefaults(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		var b strings.Builder
		fmt.Fprintf(&b, "  -%s", f.Name)
		name, usage := flag.UnquoteUsage(f)
		if a, ok := f.Value.(interface{ arg() string }); ok && name == "value" {
			name = a.arg()
		}
		if name != "" {
			b.WriteString(" " + name)
		}
		b.WriteString("\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != zeroString(f.Value) {
			if _, ok := f.Value.(stringValue); ok {
				fmt.Fprintf(&b, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(&b, " (default %v)", f.DefValue)
			}
		}
		fmt.Fprintln(fs.Output(), b.String())
	})
}

// zeroString is what v's type prints for its zero value: a default equal
// to it goes unsaid.
func zeroString(v flag.Value) string {
	t := reflect.TypeOf(v)
	var z reflect.Value
	if t.Kind() == reflect.Pointer {
		z = reflect.New(t.Elem())
	} else {
		z = reflect.Zero(t)
	}
	return z.Interface().(flag.Value).String()
}

// errUsage is returned for a command line that was refused and already
// reported on the flag set's output.
var errUsage = errors.New("bad usage")

// ExitCode is the process exit code for an error from Parse: 0 after -h,
// 2 otherwise.
func ExitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// The value kinds below write straight into the field they point at. Each
// String copes with a nil pointer, which the flag package relies on to
// tell a default worth printing from the type's zero value.

// Int binds an int field.
func Int(p *int) flag.Value { return intValue{p} }

type intValue struct{ p *int }

func (v intValue) arg() string { return "int" }

func (v intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("want a whole number")
	}
	*v.p = n
	return nil
}

// Float binds a float64 field.
func Float(p *float64) flag.Value { return floatValue{p} }

type floatValue struct{ p *float64 }

func (v floatValue) arg() string { return "float" }

func (v floatValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("want a number")
	}
	*v.p = f
	return nil
}

// Bool binds a bool field; --name alone sets it.
func Bool(p *bool) flag.Value { return boolValue{p} }

type boolValue struct{ p *bool }

func (v boolValue) IsBoolFlag() bool { return true }

func (v boolValue) String() string { return strconv.FormatBool(v.p != nil && *v.p) }

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*v.p = b
	return nil
}

// String binds a string field.
func String(p *string) flag.Value { return stringValue{p} }

type stringValue struct{ p *string }

func (v stringValue) arg() string { return "string" }

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v stringValue) Set(s string) error { *v.p = s; return nil }

// Strings binds a list field. The flag takes comma-separated values and
// may be repeated; its first use replaces the preset's list.
func Strings(p *[]string) flag.Value { return &stringsValue{p: p} }

type stringsValue struct {
	p   *[]string
	set bool
}

func (v *stringsValue) arg() string { return "list" }

func (v *stringsValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func (v *stringsValue) Set(s string) error {
	if !v.set {
		*v.p, v.set = nil, true
	}
	*v.p = append(*v.p, splitList(s)...)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Duration binds a time.Duration field that must not be negative.
func Duration(p *time.Duration) flag.Value { return durationValue{p} }

type durationValue struct{ p *time.Duration }

func (v durationValue) arg() string { return "duration" }

func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 30s or 2m")
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	*v.p = d
	return nil
}

// Size binds a byte count, written with the units of bytesize.Units
// ("512MiB", "10GiB"). A trailing "/s" is accepted, as it always was.
func Size[T ~int | ~int64](p *T) flag.Value { return sizeValue[T]{p: p} }

// Rate binds bytes per second: a Size shown with "/s".
func Rate(p *int64) flag.Value { return sizeValue[int64]{p: p, rate: true} }

type sizeValue[T ~int | ~int64] struct {
	p    *T
	rate bool
}

func (v sizeValue[T]) arg() string {
	if v.rate {
		return "rate"
	}
	return "size"
}

func (v sizeValue[T]) String() string {
	if v.p == nil || *v.p == 0 {
		return "0"
	}
	s := bytesize.Format(int64(*v.p))
	if v.rate {
		s += "/s"
	}
	return s
}

func (v sizeValue[T]) Set(s string) error {
	n, err := bytesize.Parse(strings.TrimSuffix(s, "/s"))
	if err != nil {
		return err
	}
	if T(n) < 0 || int64(T(n)) != n {
		return fmt.Errorf("size %q out of range", s)
	}
	*v.p = T(n)
	return nil
}

// Off binds a switch that turns an optional part off: --no-state sets
// the field to nil, --no-state=false restores the preset's part.
func Off[T any](p **T) flag.Value { return offValue[T]{p: p, on: *p} }

type offValue[T any] struct {
	p  **T
	on *T
}

func (v offValue[T]) IsBoolFlag() bool { return true }

func (v offValue[T]) String() string { return strconv.FormatBool(v.p != nil && *v.p == nil) }

func (v offValue[T]) Set(s string) error {
	off, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	if off {
		*v.p = nil
	} else {
		*v.p = v.on
	}
	return nil
}

// Parsed binds a field of any type with its own parser and formatter.
func Parsed[T any](p *T, parse func(string) (T, error), format func(T) string) flag.Value {
	return parsedValue[T]{p, parse, format}
}

type parsedValue[T any] struct {
	p      *T
	parse  func(string) (T, error)
	format func(T) string
}

func (v parsedValue[T]) String() string {
	if v.p == nil {
		return ""
	}
	return v.format(*v.p)
}

func (v parsedValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}
