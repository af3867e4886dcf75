package schema

import (
	"math"
	"strconv"
	"strings"
)

// Plain scalars are resolved by YAML 1.2's core schema, as editors and JSON
// tools (the YAML language server, js-yaml) read them, and not by the YAML 1.1
// rules the parser applies: 010 is ten, not eight; 1_000, 0b101 and +0x10 are
// text. A file means one thing to the editor, to CI and to fleetd.

// scalarKind is what a plain scalar resolves to.
type scalarKind int

const (
	scalarString scalarKind = iota
	scalarNull
	scalarBool
	scalarInt
	scalarFloat
)

// resolvePlain resolves a plain (unquoted, untagged) scalar by YAML 1.2's
// core schema (YAML 1.2.2, section 10.3.2).
func resolvePlain(s string) scalarKind {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return scalarNull
	case "true", "True", "TRUE", "false", "False", "FALSE":
		return scalarBool
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN":
		return scalarFloat
	}
	switch {
	case isCoreDecimal(s):
		return scalarInt
	case len(s) > 2 && s[0] == '0' && s[1] == 'o' && allIn(s[2:], isOctal):
		return scalarInt
	case len(s) > 2 && s[0] == '0' && s[1] == 'x' && allIn(s[2:], isHex):
		return scalarInt
	case isCoreFloat(s):
		return scalarFloat
	}
	return scalarString
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isOctal(c byte) bool { return c >= '0' && c <= '7' }
func isHex(c byte) bool   { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') }

func allIn(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

// isCoreDecimal matches [-+]?[0-9]+.
func isCoreDecimal(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	return allIn(s, isDigit)
}

// isCoreFloat matches [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?.
func isCoreFloat(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	mant, exp := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, exp = s[:i], s[i+1:]
		if exp != "" && (exp[0] == '-' || exp[0] == '+') {
			exp = exp[1:]
		}
		if !allIn(exp, isDigit) {
			return false
		}
	}
	whole, frac, dot := strings.Cut(mant, ".")
	switch {
	case !dot:
		return allIn(whole, isDigit)
	case whole == "":
		return allIn(frac, isDigit)
	default:
		return allIn(whole, isDigit) && (frac == "" || allIn(frac, isDigit))
	}
}

// parseCoreInt reads an integer the core schema accepts; ok is false when it
// does not fit in 64 bits.
func parseCoreInt(s string) (int64, bool) {
	var (
		v   int64
		err error
	)
	switch {
	case strings.HasPrefix(s, "0o"):
		v, err = strconv.ParseInt(s[2:], 8, 64)
	case strings.HasPrefix(s, "0x"):
		v, err = strconv.ParseInt(s[2:], 16, 64)
	default:
		v, err = strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 64)
	}
	return v, err == nil
}

// parseCoreFloat reads a float the core schema accepts; ok is false for
// infinities, NaN and values beyond float64.
func parseCoreFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// yaml11Number returns the plain decimal form of s when s is a number in
// YAML 1.1 (or to a Go or Python reader) but text in YAML 1.2: 1_000,
// 0b101, +0x1f, 0755 read as octal, 1:30 sexagesimal. It returns "" when s
// is no such number.
func yaml11Number(s string) string {
	t := s
	sign := ""
	if t != "" && (t[0] == '-' || t[0] == '+') {
		if t[0] == '-' {
			sign = "-"
		}
		t = t[1:]
	}
	clean := strings.ReplaceAll(t, "_", "")
	if clean == "" || strings.HasPrefix(clean, "_") {
		return ""
	}
	var n int64
	var err error
	switch {
	case strings.HasPrefix(clean, "0b"):
		n, err = strconv.ParseInt(clean[2:], 2, 64)
	case strings.HasPrefix(clean, "0o"):
		n, err = strconv.ParseInt(clean[2:], 8, 64)
	case strings.HasPrefix(clean, "0x"):
		n, err = strconv.ParseInt(clean[2:], 16, 64)
	case strings.Contains(clean, ":"):
		// Sexagesimal (base 60), as in 1:30.
		for _, part := range strings.Split(clean, ":") {
			d, perr := strconv.ParseInt(part, 10, 64)
			if perr != nil || d >= 60 && n > 0 {
				return ""
			}
			n = n*60 + d
		}
	default:
		if f, ferr := strconv.ParseFloat(clean, 64); ferr == nil && !math.IsInf(f, 0) && clean != t {
			return sign + strconv.FormatFloat(f, 'f', -1, 64)
		}
		return ""
	}
	if err != nil {
		return ""
	}
	return sign + strconv.FormatInt(n, 10)
}
