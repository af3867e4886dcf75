package schema

import (
	"bytes"
	"strings"
)

// fastParse reads the plain block-style YAML that nearly every fleet file
// is written in (mappings, lists, one-line plain and quoted scalars, one-line
// flow lists and mappings of scalars, comments) straight into JSON-compatible
// values, several times faster than building a yaml.Node tree. It yields the
// very values the full parser and converter would, or ok=false for anything
// outside that subset or in doubt (anchors, tags, block scalars, escapes,
// multi-line scalars, non-ASCII text, errors of any kind), and the caller
// then takes the full path, which also words every error. Positions are not
// recorded here: a document built this way is parsed fully again only when
// a diagnostic needs a line and column.
func fastParse(data []byte) (any, bool) {
	for _, c := range data {
		if c >= 0x80 || c == '\t' || c == '\r' || (c < 0x20 && c != '\n') || c == 0x7f {
			return nil, false
		}
	}
	p := &fastParser{lines: make([]fastLine, 0, bytes.Count(data, []byte("\n"))+1)}
	rest := string(data) // one copy; every line and scalar is a slice of it
	for len(rest) > 0 {
		raw := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			raw, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		line := strings.TrimRight(raw, " ")
		text := strings.TrimLeft(line, " ")
		if text == "" || text[0] == '#' {
			continue
		}
		if len(text) == len(line) && (strings.HasPrefix(text, "---") || strings.HasPrefix(text, "...") || text[0] == '%') {
			return nil, false
		}
		p.lines = append(p.lines, fastLine{indent: len(line) - len(text), text: text})
	}
	if len(p.lines) == 0 || p.lines[0].indent != 0 || isSeqLine(p.lines[0].text) {
		return nil, false
	}
	v, ok := p.mapping(0, 0)
	if !ok || p.i != len(p.lines) {
		return nil, false
	}
	return v, true
}

type fastLine struct {
	indent int
	text   string
}

type fastParser struct {
	lines []fastLine
	i     int
}

func isSeqLine(t string) bool { return t == "-" || strings.HasPrefix(t, "- ") }

// block reads the block that starts at the current line, at its indentation.
func (p *fastParser) block(depth int) (any, bool) {
	if depth > maxDepth/2 {
		return nil, false
	}
	l := p.lines[p.i]
	if isSeqLine(l.text) {
		return p.sequence(l.indent, depth)
	}
	return p.mapping(l.indent, depth)
}

func (p *fastParser) mapping(ind, depth int) (any, bool) {
	// Sized by the lines at this indentation before the block ends: growing
	// the maps of 10,000 status files as their keys arrive was most of
	// what reading them allocated.
	n := 0
	for j := p.i; j < len(p.lines) && p.lines[j].indent >= ind; j++ {
		if p.lines[j].indent == ind {
			n++
		}
	}
	m := make(map[string]any, n)
	for p.i < len(p.lines) && p.lines[p.i].indent == ind {
		key, rest, ok := splitKey(p.lines[p.i].text)
		if !ok {
			return nil, false
		}
		if _, dup := m[key]; dup {
			return nil, false
		}
		p.i++
		var v any
		if rest == "" {
			switch {
			case p.i < len(p.lines) && p.lines[p.i].indent > ind:
				if v, ok = p.block(depth + 1); !ok {
					return nil, false
				}
			case p.i < len(p.lines) && p.lines[p.i].indent == ind && isSeqLine(p.lines[p.i].text):
				if v, ok = p.sequence(ind, depth+1); !ok {
					return nil, false
				}
			}
		} else {
			if v, ok = inlineValue(rest); !ok {
				return nil, false
			}
			if p.i < len(p.lines) && p.lines[p.i].indent > ind {
				return nil, false // a continuation line or a misplaced block
			}
		}
		m[key] = v
	}
	return m, true
}

func (p *fastParser) sequence(ind, depth int) (any, bool) {
	out := []any{}
	for p.i < len(p.lines) && p.lines[p.i].indent == ind && isSeqLine(p.lines[p.i].text) {
		rest := p.lines[p.i].text[1:]
		item := strings.TrimLeft(rest, " ")
		var v any
		var ok bool
		switch {
		case item == "" || item[0] == '#':
			p.i++
			if p.i < len(p.lines) && p.lines[p.i].indent > ind {
				if v, ok = p.block(depth + 1); !ok {
					return nil, false
				}
			}
		case isSeqLine(item):
			return nil, false
		case looksLikeKey(item):
			// A mapping that starts on the item's line, at the column of its
			// first key.
			p.lines[p.i] = fastLine{indent: ind + 1 + len(rest) - len(item), text: item}
			if v, ok = p.mapping(p.lines[p.i].indent, depth+1); !ok {
				return nil, false
			}
		default:
			if v, ok = inlineValue(item); !ok {
				return nil, false
			}
			p.i++
			if p.i < len(p.lines) && p.lines[p.i].indent > ind {
				return nil, false
			}
		}
		out = append(out, v)
	}
	return out, true
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '/' || c == '-'
}

// splitKey splits "key: rest" (or "key:") into a simple plain key and the
// rest of the line without a trailing comment.
func splitKey(t string) (key, rest string, ok bool) {
	i := 0
	for i < len(t) && isKeyChar(t[i]) {
		i++
	}
	// The parser allows simple keys of at most 1024 characters.
	if i == 0 || i > 1000 || i == len(t) || t[i] != ':' || t[0] == '-' || t[0] == '.' {
		return "", "", false
	}
	key, rest = t[:i], t[i+1:]
	if rest != "" && rest[0] != ' ' {
		return "", "", false
	}
	rest = strings.TrimLeft(rest, " ")
	if strings.HasPrefix(rest, "#") {
		rest = ""
	}
	return key, rest, key != "<<"
}

func looksLikeKey(t string) bool {
	_, _, ok := splitKey(t)
	return ok
}

// inlineValue reads the value after "key: " or "- ": a scalar or a flow
// collection, with an optional trailing comment.
func inlineValue(s string) (any, bool) {
	switch s[0] {
	case '"', '\'':
		v, rest, ok := quoted(s)
		if !ok || !onlyComment(rest) {
			return nil, false
		}
		return v, true
	case '[', '{':
		v, rest, ok := flow(s)
		if !ok || !onlyComment(rest) {
			return nil, false
		}
		return v, true
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = strings.TrimRight(s[:i], " ")
	}
	if !plainOK(s, false) {
		return nil, false
	}
	return plainValue(s)
}

func onlyComment(rest string) bool {
	t := strings.TrimLeft(rest, " ")
	return t == "" || (t[0] == '#' && len(t) < len(rest))
}

// plainOK reports whether s is a plain scalar this parser reads the way the
// full parser does.
func plainOK(s string, inFlow bool) bool {
	if s == "" || strings.ContainsAny(s[:1], "-?:,[]{}#&*!|>'\"%@`") && !(s[0] == '-' && len(s) > 1 && s[1] != ' ') {
		return false
	}
	if strings.Contains(s, ": ") || strings.HasSuffix(s, ":") || strings.Contains(s, " #") {
		return false
	}
	// In a flow collection the full parser takes '?' before an indicator
	// as a key indicator ("[0?]" is refused): leave any '?' to it.
	if inFlow && strings.ContainsAny(s, ",[]{}:#?") {
		return false
	}
	return true
}

// plainValue resolves a plain scalar by YAML 1.2's core schema, as the
// converter does.
func plainValue(s string) (any, bool) {
	switch resolvePlain(s) {
	case scalarNull:
		return nil, true
	case scalarBool:
		return s[0] == 't' || s[0] == 'T', true
	case scalarInt:
		i, ok := parseCoreInt(s)
		return i, ok
	case scalarFloat:
		f, ok := parseCoreFloat(s)
		return f, ok
	}
	return s, true
}

// quoted reads a one-line quoted scalar without escapes.
func quoted(s string) (string, string, bool) {
	q := s[0]
	if q == '"' {
		end := strings.IndexByte(s[1:], '"')
		if end < 0 || strings.IndexByte(s[1:1+end], '\\') >= 0 {
			return "", "", false
		}
		return s[1 : 1+end], s[2+end:], true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), s[i+1:], true
	}
	return "", "", false
}

// flow reads a one-line flow list or mapping of scalars.
func flow(s string) (any, string, bool) {
	open, end := s[0], byte(']')
	if open == '{' {
		end = '}'
	}
	s = strings.TrimLeft(s[1:], " ")
	var list []any
	m := map[string]any{}
	if strings.HasPrefix(s, string(end)) {
		if open == '[' {
			return []any{}, s[1:], true
		}
		return m, s[1:], true
	}
	for {
		var key string
		if open == '{' {
			i := 0
			for i < len(s) && isKeyChar(s[i]) {
				i++
			}
			if i == 0 || i > 1000 || i+1 >= len(s) || s[i] != ':' || s[i+1] != ' ' || s[0] == '-' || s[0] == '.' {
				return nil, "", false
			}
			key, s = s[:i], strings.TrimLeft(s[i+1:], " ")
			if _, dup := m[key]; dup || key == "<<" {
				return nil, "", false
			}
		}
		var v any
		if s == "" {
			return nil, "", false
		}
		if s[0] == '"' || s[0] == '\'' {
			q, rest, ok := quoted(s)
			if !ok {
				return nil, "", false
			}
			v, s = q, rest
		} else {
			i := strings.IndexAny(s, ",]}")
			if i < 0 {
				return nil, "", false
			}
			item := strings.TrimRight(s[:i], " ")
			if !plainOK(item, true) {
				return nil, "", false
			}
			var ok bool
			if v, ok = plainValue(item); !ok {
				return nil, "", false
			}
			s = s[i:]
		}
		if open == '{' {
			m[key] = v
		} else {
			list = append(list, v)
		}
		s = strings.TrimLeft(s, " ")
		switch {
		case s == "":
			return nil, "", false
		case s[0] == end:
			if open == '[' {
				return list, s[1:], true
			}
			return m, s[1:], true
		case s[0] == ',':
			s = strings.TrimLeft(s[1:], " ")
			if s == "" || s[0] == end || s[0] == ',' {
				return nil, "", false
			}
		default:
			return nil, "", false
		}
	}
}
