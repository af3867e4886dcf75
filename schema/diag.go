package schema

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Severity says whether a diagnostic fails validation.
type Severity string

// Severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Diagnostic is one problem in a fleet repo, located at the YAML node that is wrong.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	// Path is the file's slash-separated path relative to the repo root.
	Path string `json:"path"`
	// Line and Column are 1-based; 0 means the problem concerns the whole file.
	Line   int `json:"line"`
	Column int `json:"column"`
	// Field is the field path in the document, such as pools[1].replicas.
	Field string `json:"field,omitempty"`
	// Check names the rule that failed, for machine-readable reports.
	Check   string `json:"check"`
	Message string `json:"message"`
}

// String formats the diagnostic as path:line:col: field: message.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.Path)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Column)
	}
	b.WriteString(": ")
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	if d.Field != "" {
		b.WriteString(d.Field)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is a list of problems.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	return slices.ContainsFunc(ds, func(d Diagnostic) bool { return d.Severity == SeverityError })
}

// Unreadable returns the diagnostics of folders and files that could not be
// read (CheckRead): a fleet loaded with any is missing what they name.
func (ds Diagnostics) Unreadable() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Check == CheckRead {
			out = append(out, d)
		}
	}
	return out
}

// Sort orders diagnostics by file, line, column, field and message.
func (ds Diagnostics) Sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Field, b.Field),
			cmp.Compare(a.Message, b.Message),
		)
	})
}

// Error joins the diagnostics into one message, one per line.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}
