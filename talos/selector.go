package talos

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/siderolabs/talos/pkg/machinery/cel"
	"github.com/siderolabs/talos/pkg/machinery/cel/celenv"
)

// sizeRe matches "480GB", "1 TB", "512GiB" or a plain byte count.
var sizeRe = regexp.MustCompile(`^(\d+)\s*(kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$`)

// sizeUnits are the multipliers celenv.DiskLocator declares as uint constants.
var sizeUnits = map[string]uint64{
	"kB":  1000,
	"MB":  1000 * 1000,
	"GB":  1000 * 1000 * 1000,
	"TB":  1000 * 1000 * 1000 * 1000,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

// parseSize returns the byte count and the CEL term for a size ("480u * GB").
func parseSize(s string) (uint64, string, error) {
	m := sizeRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, "", fmt.Errorf("size %q: want a number with a unit, e.g. 480GB, 1TB, 512GiB", s)
	}

	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("size %q: %w", s, err)
	}

	unit := m[2]
	if unit == "KB" {
		unit = "kB"
	}

	if unit == "" {
		return n, fmt.Sprintf("%du", n), nil
	}

	mult := sizeUnits[unit]
	if n > ^uint64(0)/mult {
		return 0, "", fmt.Errorf("size %q: too large", s)
	}

	return n * mult, fmt.Sprintf("%du * %s", n, unit), nil
}

// IsZero reports whether no criterion is set.
func (d DiskSelector) IsZero() bool {
	return d == DiskSelector{}
}

// Expression renders the selector as a Talos 1.14 CEL boolean expression over `disk`
// (block.DiskSpec): every set field must match.
func (d DiskSelector) Expression() (string, error) {
	problems := d.problems("installDisk")
	if len(problems) > 0 {
		return "", &ValidationError{Problems: problems}
	}

	return d.expression(), nil
}

// Compile renders and parses the selector with celenv.DiskLocator, as Talos does.
func (d DiskSelector) Compile() (cel.Expression, error) {
	expr, err := d.Expression()
	if err != nil {
		return cel.Expression{}, err
	}

	compiled, err := cel.ParseBooleanExpression(expr, celenv.DiskLocator())
	if err != nil {
		return cel.Expression{}, fmt.Errorf("compile disk selector %q: %w", expr, err)
	}

	return compiled, nil
}

// expression renders without checking; callers check problems first.
func (d DiskSelector) expression() string {
	var terms []string

	for _, f := range []struct{ field, value string }{
		{"serial", d.Serial},
		{"wwid", d.WWID},
		{"model", d.Model},
		{"dev_path", d.DevPath},
	} {
		if f.value != "" {
			terms = append(terms, fmt.Sprintf("disk.%s == %s", f.field, strconv.Quote(f.value)))
		}
	}

	if d.MinSize != "" {
		_, term, _ := parseSize(d.MinSize) //nolint:errcheck // checked by problems
		terms = append(terms, "disk.size >= "+term)
	}

	if d.MaxSize != "" {
		_, term, _ := parseSize(d.MaxSize) //nolint:errcheck // checked by problems
		terms = append(terms, "disk.size <= "+term)
	}

	// Never install onto read-only media or an optical drive, whatever else matches.
	terms = append(terms, "!disk.readonly", "!disk.cdrom")

	return strings.Join(terms, " && ")
}

// problems checks the selector; path is its field path.
func (d DiskSelector) problems(path string) []Problem {
	var ps []Problem

	if d.IsZero() {
		return []Problem{{Path: path, Message: "set at least one of serial, wwid, model, devPath, minSize, maxSize"}}
	}

	for _, f := range []struct{ name, value string }{
		{"serial", d.Serial}, {"wwid", d.WWID}, {"model", d.Model}, {"devPath", d.DevPath},
	} {
		if f.value == "" {
			continue
		}

		if strings.TrimSpace(f.value) != f.value {
			ps = append(ps, Problem{Path: path + "." + f.name, Message: fmt.Sprintf("%q has leading or trailing spaces; Talos compares exactly", f.value)})
		}

		// Talos reports disk identities as UTF-8 (protobuf strings); CEL's \x escapes mean
		// code points, not bytes, so a non-UTF-8 value could never match.
		if !utf8.ValidString(f.value) {
			ps = append(ps, Problem{Path: path + "." + f.name, Message: fmt.Sprintf("%q is not valid UTF-8", f.value)})
		}

		if strings.ContainsFunc(f.value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			ps = append(ps, Problem{Path: path + "." + f.name, Message: fmt.Sprintf("%q contains control characters", f.value)})
		}
	}

	if d.DevPath != "" && !strings.HasPrefix(d.DevPath, "/dev/") {
		ps = append(ps, Problem{Path: path + ".devPath", Message: fmt.Sprintf("%q is not a /dev/ path", d.DevPath)})
	}

	var minBytes, maxBytes uint64

	if d.MinSize != "" {
		var err error
		if minBytes, _, err = parseSize(d.MinSize); err != nil {
			ps = append(ps, Problem{Path: path + ".minSize", Message: err.Error()})
		}
	}

	if d.MaxSize != "" {
		var err error
		if maxBytes, _, err = parseSize(d.MaxSize); err != nil {
			ps = append(ps, Problem{Path: path + ".maxSize", Message: err.Error()})
		} else if maxBytes == 0 {
			ps = append(ps, Problem{Path: path + ".maxSize", Message: "must be greater than zero"})
		}
	}

	if minBytes > 0 && maxBytes > 0 && minBytes > maxBytes {
		ps = append(ps, Problem{Path: path + ".minSize", Message: fmt.Sprintf("%s is larger than maxSize %s", d.MinSize, d.MaxSize)})
	}

	if len(ps) > 0 {
		return ps
	}

	if _, err := cel.ParseBooleanExpression(d.expression(), celenv.DiskLocator()); err != nil {
		ps = append(ps, Problem{Path: path, Message: fmt.Sprintf("CEL selector does not compile: %v", err)})
	}

	return ps
}
