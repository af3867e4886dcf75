package reconcile

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// yamlWriter emits block-style YAML. Status files are written by hand rather
// than through a generic encoder: the output is stable by construction and
// rendering ten thousand of them stays fast. ReadStatus parses them with
// schema.ParseYAML (YAML 1.2, as fleet files are read), and a round-trip
// test keeps both sides in step.
type yamlWriter struct {
	b []byte
}

func (w *yamlWriter) indent(n int) {
	for range n {
		w.b = append(w.b, ' ')
	}
}

// key writes "key:" at indent n, with item marking the first key of a list item.
func (w *yamlWriter) key(n int, item bool, k string) {
	if item {
		w.indent(n - 2)
		w.b = append(w.b, "- "...)
	} else {
		w.indent(n)
	}
	w.b = append(w.b, k...)
	w.b = append(w.b, ':')
}

func (w *yamlWriter) str(n int, item bool, k, v string) {
	w.key(n, item, k)
	w.b = append(w.b, ' ')
	w.b = appendYAMLString(w.b, v)
	w.b = append(w.b, '\n')
}

func (w *yamlWriter) strOpt(n int, k, v string) {
	if v != "" {
		w.str(n, false, k, v)
	}
}

func (w *yamlWriter) int(n int, k string, v int) {
	w.key(n, false, k)
	w.b = append(w.b, ' ')
	w.b = strconv.AppendInt(w.b, int64(v), 10)
	w.b = append(w.b, '\n')
}

func (w *yamlWriter) intOpt(n int, k string, v int) {
	if v != 0 {
		w.int(n, k, v)
	}
}

func (w *yamlWriter) float(n int, k string, v float64, places int) {
	w.key(n, false, k)
	w.b = append(w.b, ' ')
	w.b = strconv.AppendFloat(w.b, v, 'f', places, 64)
	w.b = append(w.b, '\n')
}

func (w *yamlWriter) bool(n int, k string, v bool) {
	w.key(n, false, k)
	w.b = append(w.b, ' ')
	w.b = strconv.AppendBool(w.b, v)
	w.b = append(w.b, '\n')
}

func (w *yamlWriter) boolOpt(n int, k string, v bool) {
	if v {
		w.bool(n, k, v)
	}
}

func (w *yamlWriter) time(n int, item bool, k string, t time.Time) {
	w.str(n, item, k, t.UTC().Format(time.RFC3339))
}

// strList writes a list of strings as a flow sequence on one line when
// short, else as a block.
func (w *yamlWriter) strList(n int, k string, vs []string) {
	if len(vs) == 0 {
		return
	}
	w.key(n, false, k)
	w.b = append(w.b, '\n')
	for _, v := range vs {
		w.indent(n + 2)
		w.b = append(w.b, "- "...)
		w.b = appendYAMLString(w.b, v)
		w.b = append(w.b, '\n')
	}
}

// flowList writes short plain lists such as roles inline: [etcd, controlplane].
func (w *yamlWriter) flowList(n int, k string, vs []string) {
	if len(vs) == 0 {
		return
	}
	w.key(n, false, k)
	w.b = append(w.b, " ["...)
	for i, v := range vs {
		if i > 0 {
			w.b = append(w.b, ", "...)
		}
		w.b = appendYAMLString(w.b, v)
	}
	w.b = append(w.b, "]\n"...)
}

// appendYAMLString appends s as a YAML scalar that reads back as the same
// string: plain when that is unambiguous, else double-quoted with JSON-style
// escapes, which YAML accepts.
func appendYAMLString(b []byte, s string) []byte {
	if plainSafe(s) {
		return append(b, s...)
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = append(b, '"')
	if !needsEscape(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || r == 0xfeff || r >= 0xfff0 && r <= 0xffff:
			b = append(b, '\\', 'u')
			h := strconv.FormatInt(int64(r), 16)
			for range 4 - len(h) {
				b = append(b, '0')
			}
			b = append(b, h...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// needsEscape reports whether s holds a character that a double-quoted YAML
// scalar cannot hold as it is.
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return true
		}
	}
	return false
}

// plainSafe reports whether s can be written without quotes: it starts with
// a letter, holds only characters with no YAML meaning, and is not a word
// YAML 1.1 reads as a boolean or null.
func plainSafe(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	c := s[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '/' || c == '+' || c == '@':
		default:
			return false
		}
	}
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf":
		return false
	}
	return true
}
