package reconcile

import (
	"strings"
	"testing"
)

func TestEscapeText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"payments-prod", "payments-prod"},
		{"Zürich ünd 東京", "Zürich ünd 東京"},
		{"a\x1b[31mred", `a\x1b[31mred`},
		{"line\nbreak\ttab\rcr", `line\nbreak\ttab\rcr`},
		{"bell\x07 del\x7f", `bell\x07 del\x7f`},
		{"c1 \u0085 sep \u2028 para \u2029", `c1 \u0085 sep \u2028 para \u2029`},
		{"evil\u202egnp.exe", `evil\u202egnp.exe`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"bad \xff byte", `bad \xff byte`},
	}
	for _, tt := range tests {
		if got := EscapeText(tt.in); got != tt.want {
			t.Errorf("EscapeText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := EscapeLines("a\nb\x1b\n"); got != "a\nb\\x1b\n" {
		t.Errorf("EscapeLines kept %q", got)
	}
}

func TestMarkdownText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"cn=@all,ou=groups", "cn=@\u200ball,ou=groups"},
		{"ping @channel and @here", "ping @\u200bchannel and @\u200bhere"},
		{"fixes #12 and !7", "fixes #\u200b12 and !\u200b7"},
		{"mail a@b", "mail a@\u200bb"},
		{"<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"},
		{"[click](https://evil)", `\[click\](https://evil)`},
		{"a|b `code` *bold*", `a\|b \` + "`code\\`" + ` \*bold\*`},
		{"two\nlines", "two lines"},
		{"esc\x1b[2J", `esc\x1b\[2J`},
		{"openldap_group://cn=qa", "openldap_group://cn=qa"},
		{"at the end @", "at the end @"},
	}
	for _, tt := range tests {
		if got := MarkdownText(tt.in); got != tt.want {
			t.Errorf("MarkdownText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestPlanMarkdownNeutralisesMentions renders a plan whose action reason
// quotes an LDAP DN with @all and checks that no mention survives.
func TestPlanMarkdownNeutralisesMentions(t *testing.T) {
	p := &Plan{Revision: "abc", Blocked: "group cn=@all,dc=x is \x1b[31mbroken"}
	var md, txt strings.Builder
	if err := p.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(md.String(), "@all") || strings.Contains(md.String(), "\x1b") {
		t.Errorf("markdown keeps a mention or a control character:\n%s", md.String())
	}
	if err := p.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(txt.String(), "\x1b") || !strings.Contains(txt.String(), `\x1b[31m`) {
		t.Errorf("text output keeps a control character:\n%q", txt.String())
	}
}
