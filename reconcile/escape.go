package reconcile

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Text from fleet repos (file names, cluster names, LDAP DNs, reasons that
// quote them) reaches terminals, CI logs and merge-request comments. These
// functions keep such text from acting on what shows it: control characters
// cannot move the cursor, recolour a terminal or hide text behind a
// right-to-left override, and a Markdown comment cannot mention @all.

// EscapeText returns s with every control character, Unicode line or
// paragraph separator, bidirectional control and invalid UTF-8 byte written
// as a visible Go-style escape (\n, \x1b, \u202e). Printable text, including
// non-ASCII letters, is unchanged.
func EscapeText(s string) string {
	if isPlainText(s, false) {
		return s
	}
	return escapeText(s, false)
}

// EscapeLines is EscapeText for multi-line output: newlines stay.
func EscapeLines(s string) string {
	if isPlainText(s, true) {
		return s
	}
	return escapeText(s, true)
}

func isPlainText(s string, keepNewlines bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c < 0x20 && !(keepNewlines && c == '\n') || c == 0x7f {
			if c >= 0x80 {
				// Non-ASCII: look closer.
				return !needsEscapeUnicode(s[i:])
			}
			return false
		}
	}
	return true
}

func needsEscapeUnicode(s string) bool {
	for _, r := range s {
		if escapeRune(r) || r < 0x20 && r != '\n' || r == 0x7f {
			return true
		}
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return true
		}
		i += n
	}
	return false
}

// escapeRune reports whether a non-ASCII rune must be escaped: C1 controls,
// line and paragraph separators, bidirectional and invisible format
// characters.
func escapeRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x2028 || r == 0x2029:
		return true
	case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0xfeff, r == 0x061c:
		return true
	}
	return false
}

func escapeText(s string, keepNewlines bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && keepNewlines:
			b.WriteByte('\n')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case escapeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// MarkdownText makes s safe on one line of a Markdown comment in GitLab or
// GitHub: control characters escaped (EscapeText), newlines made spaces, HTML
// tags, code spans, emphasis, links and table pipes taken literally
// (underscores inside words emphasise nothing and stay as they are), and @mentions (a DN with @all would ping a whole instance when
// the plan is posted) broken by a zero-width space after the @, so they show
// as written and notify no one. Commit references (#1, !2) are broken the
// same way.
func MarkdownText(s string) string {
	s = EscapeText(strings.ReplaceAll(s, "\n", " "))
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '`', '*', '[', ']', '|':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '@', '#', '!', '$', '%':
			b.WriteByte(c)
			if i+1 < len(s) && isRefChar(s[i+1]) {
				b.WriteString("\u200b")
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isRefChar reports whether c may start what follows a reference sigil:
// a user, group, issue, merge request, snippet or label name.
func isRefChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '~'
}
