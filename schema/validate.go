package schema

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/message"
)

var (
	//go:embed jsonschema/fleet.schema.json
	fleetSchemaJSON []byte
	//go:embed jsonschema/cluster.schema.json
	clusterSchemaJSON []byte
)

// JSONSchema returns the JSON Schema of a kind ("fleet" or "cluster"), as
// embedded in the binary, for editors and the YAML language server.
func JSONSchema(name string) ([]byte, error) {
	switch strings.ToLower(name) {
	case "fleet":
		return slices.Clone(fleetSchemaJSON), nil
	case "cluster":
		return slices.Clone(clusterSchemaJSON), nil
	}
	return nil, fmt.Errorf("unknown schema %q: want fleet or cluster", name)
}

var compiled = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseRegexpEngine(memoRegexp)
	out := map[string]*jsonschema.Schema{}
	for k, raw := range map[string][]byte{KindFleet: fleetSchemaJSON, KindCluster: clusterSchemaJSON} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", k, err)
		}
		url := "mem:///" + strings.ToLower(k) + ".schema.json"
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("schema %s: %w", k, err)
		}
		s, err := c.Compile(url)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", k, err)
		}
		out[k] = s
	}
	return out, nil
})

// memoRegexp compiles a schema pattern with Go's regexp and remembers the
// verdict for short strings: a fleet repeats the same team, provider, class,
// role and group names in thousands of files.
func memoRegexp(pattern string) (jsonschema.Regexp, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	return &memoRE{re: re}, nil
}

// memoCap bounds how many verdicts one pattern remembers.
const memoCap = 4096

type memoRE struct {
	re *regexp.Regexp
	mu sync.RWMutex
	m  map[string]bool
}

func (r *memoRE) String() string { return r.re.String() }

func (r *memoRE) MatchString(s string) bool {
	if len(s) > 256 {
		return r.re.MatchString(s)
	}
	r.mu.RLock()
	v, ok := r.m[s]
	r.mu.RUnlock()
	if ok {
		return v
	}
	v = r.re.MatchString(s)
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]bool{}
	}
	if len(r.m) < memoCap {
		r.m[s] = v
	}
	r.mu.Unlock()
	return v
}

var printer = message.NewPrinter(message.MatchLanguage("en"))

// validateSchema checks doc against the schema of kind and returns one
// diagnostic per failed leaf, located at the offending YAML node. goType is
// the Go type the document decodes into; it names the allowed fields of an
// object when an unknown one appears.
func validateSchema(doc *document, k string, goType reflect.Type) Diagnostics {
	schemas, err := compiled()
	if err != nil {
		panic(err) // the embedded schemas are part of the binary; tests compile them
	}
	verr := schemas[k].Validate(doc.value())
	if verr == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(verr, &ve) {
		return Diagnostics{{Severity: SeverityError, Path: doc.path, Line: 1, Column: 1, Check: "schema", Message: verr.Error()}}
	}
	var out Diagnostics
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		// Exactly-one-of rules are one problem, not a failure per branch.
		if _, ok := e.ErrorKind.(*kind.OneOf); ok {
			out = append(out, oneOfDiagnostic(doc, e))
			return
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		out = append(out, schemaDiagnostic(doc, e, goType)...)
	}
	walk(ve)
	// A block that is not allowed at all is one problem: what is wrong
	// inside it is noise.
	var banned []string
	for _, e := range forbidden(ve) {
		banned = append(banned, doc.fieldPath(e))
	}
	if len(banned) > 0 {
		out = slices.DeleteFunc(out, func(d Diagnostic) bool {
			for _, b := range banned {
				if strings.HasPrefix(d.Field, b+".") || strings.HasPrefix(d.Field, b+"[") ||
					(d.Field == b && !strings.Contains(d.Message, " takes no ")) {
					return true
				}
			}
			return false
		})
	}
	return out
}

// forbidden returns the instance locations that a false schema refuses.
func forbidden(e *jsonschema.ValidationError) [][]string {
	var out [][]string
	if _, ok := e.ErrorKind.(*kind.FalseSchema); ok {
		out = append(out, e.InstanceLocation)
	}
	for _, c := range e.Causes {
		out = append(out, forbidden(c)...)
	}
	return out
}

func schemaDiagnostic(doc *document, e *jsonschema.ValidationError, goType reflect.Type) Diagnostics {
	loc := e.InstanceLocation
	d := Diagnostic{Severity: SeverityError, Path: doc.path, Field: doc.fieldPath(loc), Check: "schema"}
	at := func(p position) Diagnostic { d.Line, d.Column = p.line, p.col; return d }
	switch ek := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		var ds Diagnostics
		allowed := fieldNames(goType, loc)
		for _, name := range ek.Properties {
			child := append(slices.Clone(loc), name)
			d.Field = doc.fieldPath(child)
			msg := fmt.Sprintf("unknown field %q", name)
			if s := suggest(name, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			if len(allowed) > 0 {
				msg += "; allowed fields: " + strings.Join(allowed, ", ")
			}
			d.Message = msg
			ds = append(ds, at(doc.keyPos(child...)))
		}
		return ds
	case *kind.Required:
		var ds Diagnostics
		for _, name := range ek.Missing {
			d.Field = doc.fieldPath(append(slices.Clone(loc), name))
			d.Message = fmt.Sprintf("required field %q is missing", name)
			if isProviderLoc(loc) && (name == ProviderAWS || name == ProviderVSphere) {
				d.Message = fmt.Sprintf("a provider of type %s needs a %s block (%s)", name, name, map[string]string{
					ProviderAWS: "region, subnets, ...", ProviderVSphere: "server, datacenter, ..."}[name])
				ds = append(ds, at(doc.valuePos(append(slices.Clone(loc), "type")...)))
				continue
			}
			ds = append(ds, at(doc.valuePos(loc...)))
		}
		return ds
	case *kind.FalseSchema:
		if len(loc) > 0 && isProviderLoc(loc[:len(loc)-1]) {
			block := loc[len(loc)-1]
			other := ProviderAWS
			if block == ProviderAWS {
				other = ProviderVSphere
			}
			d.Message = fmt.Sprintf("a provider of type %s takes no %s block: remove it or change type", other, block)
		} else {
			d.Message = "this field is not allowed here"
		}
		return Diagnostics{at(doc.keyPos(loc...))}
	case *kind.Not:
		if v, ok := valueAt(doc, loc).(string); ok && len(loc) == 2 && loc[0] == "status" && loc[1] == "branch" {
			d.Message = fmt.Sprintf("%q is not a valid branch name: %s", v, checkBranchName(v))
		} else {
			d.Message = "the value is not allowed here"
		}
	case *kind.Type:
		d.Message = fmt.Sprintf("expected %s, got %s%s", strings.Join(ek.Want, " or "), ek.Got, gotValue(doc, loc))
		if v, ok := valueAt(doc, loc).(string); ok && (slices.Contains(ek.Want, "integer") || slices.Contains(ek.Want, "number")) {
			if p := yaml11Number(v); p != "" {
				d.Message = fmt.Sprintf("expected %s, got the text %q: YAML 1.2 (editors, CI and fleetd) reads it as text, not a number; write %s", strings.Join(ek.Want, " or "), v, p)
			}
		}
	case *kind.Const:
		d.Message = fmt.Sprintf("must be %v, got %s", display(ek.Want), display(ek.Got))
	case *kind.Enum:
		want := make([]string, len(ek.Want))
		for i, w := range ek.Want {
			want[i] = display(w)
		}
		d.Message = fmt.Sprintf("%s is not allowed; use one of %s", display(ek.Got), strings.Join(want, ", "))
	case *kind.Pattern:
		d.Message = fmt.Sprintf("%s is not valid: %s", display(ek.Got), patternHelp(ek.Want))
		if strings.HasPrefix(ek.Want, "^(([1-9][0-9]{0,2}") {
			d.Message = fmt.Sprintf("%s is too long: a ttl is at most %d days (%dh, %dm)", display(ek.Got), MaxTTLDays, MaxTTLDays*24, MaxTTLDays*24*60)
		}
	case *kind.Minimum:
		d.Message = fmt.Sprintf("%s is too small: the minimum is %s", ratString(ek.Got), ratString(ek.Want))
	case *kind.Maximum:
		d.Message = fmt.Sprintf("%s is too large: the maximum is %s", ratString(ek.Got), ratString(ek.Want))
	case *kind.MultipleOf:
		d.Message = fmt.Sprintf("%s must be a multiple of %s", ratString(ek.Got), ratString(ek.Want))
	case *kind.MinLength:
		d.Message = fmt.Sprintf("must be at least %d characters long", ek.Want)
	case *kind.MaxLength:
		d.Message = fmt.Sprintf("is %d characters long: at most %d are allowed", ek.Got, ek.Want)
	case *kind.MinItems:
		d.Message = fmt.Sprintf("needs at least %d item(s), has %d", ek.Want, ek.Got)
	case *kind.MaxItems:
		d.Message = fmt.Sprintf("allows at most %d item(s), has %d", ek.Want, ek.Got)
	case *kind.MinProperties:
		d.Message = fmt.Sprintf("needs at least %d entr(y/ies), has %d", ek.Want, ek.Got)
	case *kind.UniqueItems:
		d.Message = fmt.Sprintf("items %d and %d are equal: each item may appear once", ek.Duplicates[0], ek.Duplicates[1])
		return Diagnostics{at(doc.valuePos(append(slices.Clone(loc), fmt.Sprint(ek.Duplicates[1]))...))}
	case *kind.PropertyNames:
		// The failing name itself is the instance location's last token in
		// the cause; point at the key.
		help := patternHelp("dnsLabel")
		if len(loc) > 0 && loc[len(loc)-1] == "instanceHourly" {
			help = patternHelp("^[a-z][a-z0-9-]*\\.")
		}
		d.Message = fmt.Sprintf("key %q is not a valid name: %s", ek.Property, help)
		return Diagnostics{at(doc.keyPos(append(slices.Clone(loc), ek.Property)...))}
	default:
		d.Message = e.ErrorKind.LocalizedString(printer)
	}
	return Diagnostics{at(doc.valuePos(loc...))}
}

// oneOfDiagnostic reports an exactly-one-of rule that failed: none or more
// than one of its alternatives is set.
func oneOfDiagnostic(doc *document, e *jsonschema.ValidationError) Diagnostic {
	loc := e.InstanceLocation
	d := Diagnostic{Severity: SeverityError, Path: doc.path, Field: doc.fieldPath(loc), Check: "schema"}
	switch {
	case len(loc) == 2 && loc[0] == "access":
		d.Message = "an access entry names exactly one of group (an LDAP DN) and team"
	case len(loc) == 3 && loc[0] == "providers" && loc[2] == ProviderVSphere:
		d.Message = "set exactly one of computeCluster and resourcePool"
	default:
		d.Message = e.ErrorKind.LocalizedString(printer)
	}
	p := doc.valuePos(loc...)
	d.Line, d.Column = p.line, p.col
	return d
}

// isProviderLoc reports whether loc is providers[i].
func isProviderLoc(loc []string) bool {
	return len(loc) == 2 && loc[0] == "providers"
}

// valueAt returns the document's value at loc, or nil.
func valueAt(doc *document, loc []string) any {
	v := doc.value()
	for _, tok := range loc {
		switch cur := v.(type) {
		case map[string]any:
			v = cur[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(cur) {
				return nil
			}
			v = cur[i]
		default:
			return nil
		}
	}
	return v
}

func ratString(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() && r.Num().BitLen() < 50 {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func gotValue(doc *document, loc []string) string {
	v := doc.value()
	for _, tok := range loc {
		switch cur := v.(type) {
		case map[string]any:
			v = cur[tok]
		case []any:
			var i int
			if _, err := fmt.Sscan(tok, &i); err != nil || i < 0 || i >= len(cur) {
				return ""
			}
			v = cur[i]
		default:
			return ""
		}
	}
	switch v.(type) {
	case string, bool, int64, float64:
		return " " + display(v)
	}
	return ""
}

func display(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case nil:
		return "null"
	default:
		return fmt.Sprint(v)
	}
}

// patternHelp explains a schema pattern in words; the regular expression is
// the last resort.
func patternHelp(pattern string) string {
	switch {
	case strings.Contains(pattern, "[-a-z0-9]{0,61}") || pattern == "dnsLabel":
		return "want a DNS label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit"
	case strings.HasPrefix(pattern, "^(env:"):
		return "want env:NAME or file:/absolute/path; secrets never go into the repo"
	case strings.HasPrefix(pattern, "^env:"):
		return "want env:NAME (the variable holds an AWS profile name)"
	case strings.HasPrefix(pattern, "^https://"):
		return "want an https:// URL without credentials"
	case strings.HasPrefix(pattern, "^v1\\."):
		return "want a version such as v1.31.4+rke2r1 or v1.31.4+k3s1"
	case strings.HasPrefix(pattern, "^[1-9][0-9]*(m|h|d)"):
		return "want a duration in minutes, hours or days such as 90m, 48h or 7d"
	case strings.HasPrefix(pattern, "^subnet-"):
		return "want a subnet ID such as subnet-0a1b2c3d4e5f60001"
	case strings.HasPrefix(pattern, "^sg-"):
		return "want a security group ID such as sg-0123456789abcdef0"
	case strings.HasPrefix(pattern, "^ami-"):
		return "want an AMI ID such as ami-0abcdef1234567890"
	case strings.HasPrefix(pattern, "^[a-z]{2}(-[a-z]+)+-"):
		return "want an AWS region such as eu-west-1"
	case strings.HasPrefix(pattern, "^[A-Za-z][A-Za-z0-9-]*="):
		return "want an LDAP DN such as cn=payments,ou=groups,dc=acme,dc=example"
	case strings.HasPrefix(pattern, "^([0-9a-f]{40}"):
		return "want a full commit SHA (40 or 64 lowercase hex digits)"
	case strings.HasPrefix(pattern, "^[a-z][a-z0-9-]*\\."):
		return "want an EC2 instance type such as m6i.xlarge"
	case strings.HasPrefix(pattern, "^[^@"):
		return "want an email address"
	case strings.HasPrefix(pattern, "^/"):
		return "want an absolute path"
	case strings.HasPrefix(pattern, "^[^<>"):
		return "want a name without '<', '>' or control characters"
	case strings.HasPrefix(pattern, "^[^\\x00"):
		return "want a name without control characters"
	case strings.HasPrefix(pattern, "^[A-Za-z0-9_+=,.@-]"):
		return "want an IAM instance profile name: letters, digits and _+=,.@- (at most 128)"
	case strings.HasPrefix(pattern, "^[A-Za-z0-9][A-Za-z0-9._/-]"):
		return "want a branch name of letters, digits, '.', '_', '-' and '/'"
	}
	return "must match " + pattern
}

// fieldNames returns the JSON field names allowed in the object at loc, read
// from the Go type the document decodes into (the schema mirrors it).
func fieldNames(t reflect.Type, loc []string) []string {
	for _, tok := range loc {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Slice, reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := structField(t, tok)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		if n := jsonName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

func structField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if jsonName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// suggest returns the allowed name closest to name when it is close enough
// to be a likely typo.
func suggest(name string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		d := editDistance(strings.ToLower(name), strings.ToLower(a))
		if d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Suggest returns the name in names closest to name when it is close enough
// to be a likely typo, else "".
func Suggest(name string, names []string) string {
	return suggest(name, names)
}
