package schema

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// schemaDoc is a JSON schema document with its $defs, for walking.
type schemaDoc struct {
	name string
	root map[string]any
}

func loadSchemaDocs(t *testing.T) []schemaDoc {
	t.Helper()
	var out []schemaDoc
	for _, name := range []string{"fleet", "cluster"} {
		raw, err := JSONSchema(name)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, schemaDoc{name, m})
	}
	return out
}

// resolve follows a local $ref, keeping the referring schema's other keywords.
func (d schemaDoc) resolve(s map[string]any) map[string]any {
	ref, ok := s["$ref"].(string)
	if !ok {
		return s
	}
	target := d.root
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		target = target[tok].(map[string]any)
	}
	return d.resolve(target)
}

// TestSchemaMatchesGoTypes walks each schema together with the Go type its
// files decode into: every schema property has a Go field of a fitting kind
// and every Go field a schema property, so the two cannot drift apart.
func TestSchemaMatchesGoTypes(t *testing.T) {
	roots := map[string]reflect.Type{"fleet": reflect.TypeFor[FleetSpec](), "cluster": reflect.TypeFor[ClusterSpec]()}
	for _, d := range loadSchemaDocs(t) {
		walkContract(t, d, d.root, roots[d.name], d.name)
	}
}

func walkContract(t *testing.T, d schemaDoc, s map[string]any, typ reflect.Type, at string) {
	t.Helper()
	s = d.resolve(s)
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	kind := schemaKind(s)
	want := map[string][]reflect.Kind{
		"object": {reflect.Struct, reflect.Map}, "array": {reflect.Slice}, "string": {reflect.String},
		"integer": {reflect.Int, reflect.Int64}, "number": {reflect.Float64}, "boolean": {reflect.Bool},
	}[kind]
	if !slices.Contains(want, typ.Kind()) {
		t.Errorf("%s: schema type %q, Go type %s", at, kind, typ)
		return
	}
	switch typ.Kind() {
	case reflect.Struct:
		props, _ := s["properties"].(map[string]any)
		if ap, ok := s["additionalProperties"].(bool); !ok || ap {
			t.Errorf("%s: an object decoded into %s must set additionalProperties: false", at, typ)
		}
		fields := fieldsOf(typ)
		for name, ps := range props {
			i, ok := fields[name]
			if !ok {
				t.Errorf("%s: schema property %q has no field in Go type %s", at, name, typ)
				continue
			}
			walkContract(t, d, ps.(map[string]any), typ.Field(i).Type, at+"."+name)
		}
		for name := range fields {
			if _, ok := props[name]; !ok {
				t.Errorf("%s: Go field %s.%s has no schema property %q", at, typ, name, name)
			}
		}
	case reflect.Map:
		ap, ok := s["additionalProperties"].(map[string]any)
		if !ok {
			t.Errorf("%s: a map needs an additionalProperties schema", at)
			return
		}
		walkContract(t, d, ap, typ.Elem(), at+"[*]")
	case reflect.Slice:
		items, ok := s["items"].(map[string]any)
		if !ok {
			t.Errorf("%s: an array needs an items schema", at)
			return
		}
		walkContract(t, d, items, typ.Elem(), at+"[]")
	}
}

// schemaKind returns the JSON type a schema admits, from type, const or enum.
func schemaKind(s map[string]any) string {
	if k, ok := s["type"].(string); ok {
		return k
	}
	var v any
	if c, ok := s["const"]; ok {
		v = c
	} else if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		v = e[0]
	}
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	}
	return ""
}

// TestSchemaDescriptions checks that every property of both schemas says
// what it is: editors show the description while people type.
func TestSchemaDescriptions(t *testing.T) {
	for _, d := range loadSchemaDocs(t) {
		n := 0
		walkSchema(d.root, d.name, func(s map[string]any, at string) {
			// Properties under if/then/not constrain ones declared elsewhere.
			if strings.Contains(at, "/if") || strings.Contains(at, "/then") || strings.Contains(at, "/not") {
				return
			}
			props, _ := s["properties"].(map[string]any)
			for name, ps := range props {
				n++
				if desc, _ := ps.(map[string]any)["description"].(string); len(desc) < 10 {
					t.Errorf("%s.%s: no description", at, name)
				}
			}
		})
		if n < 15 {
			t.Errorf("%s: only %d properties walked", d.name, n)
		}
	}
}

// walkSchema calls fn on every schema object in s.
func walkSchema(v any, at string, fn func(s map[string]any, at string)) {
	switch v := v.(type) {
	case map[string]any:
		fn(v, at)
		for k, child := range v {
			walkSchema(child, at+"/"+k, fn)
		}
	case []any:
		for _, child := range v {
			walkSchema(child, at, fn)
		}
	}
}

// ecmaUnsafe finds the regular-expression constructs whose meaning differs
// between Go's RE2 and ECMA-262 (what editors and Ajv run): the shorthand
// classes \d \w \s \b and their negations (Unicode in one, ASCII in the
// other), '.' (line terminators), and non-ASCII text.
var ecmaUnsafe = regexp.MustCompile(`\\[dDwWsSbB]|\\p|\\u|[^\x20-\x7e]`)

// TestSchemaPatternsMeanTheSameInRE2AndECMA checks every pattern of both
// schemas: explicit ASCII classes only, no '.' outside a class, and that it
// compiles in Go.
func TestSchemaPatternsMeanTheSameInRE2AndECMA(t *testing.T) {
	n := 0
	for _, d := range loadSchemaDocs(t) {
		walkSchema(d.root, d.name, func(s map[string]any, at string) {
			p, ok := s["pattern"].(string)
			if !ok {
				return
			}
			n++
			if m := ecmaUnsafe.FindString(p); m != "" {
				t.Errorf("%s: pattern %q uses %q, which RE2 and ECMA-262 read differently: use an explicit ASCII class", at, p, m)
			}
			if hasBareDot(p) {
				t.Errorf("%s: pattern %q uses '.' outside a class: it matches different line terminators in RE2 and ECMA-262", at, p)
			}
			if _, err := regexp.Compile(p); err != nil {
				t.Errorf("%s: %v", at, err)
			}
		})
	}
	if n < 15 {
		t.Errorf("only %d patterns walked", n)
	}
	// The check itself must catch what it is for.
	for _, bad := range []string{`^\d+$`, `^\s$`, `^a.b$`, `^[\w]$`} {
		if ecmaUnsafe.FindString(bad) == "" && !hasBareDot(bad) {
			t.Errorf("the check misses %q", bad)
		}
	}
}

// hasBareDot reports whether p has an unescaped '.' outside a bracket class.
func hasBareDot(p string) bool {
	inClass := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			i++
		case c == '[':
			inClass = true
		case c == ']':
			inClass = false
		case c == '.' && !inClass:
			return true
		}
	}
	return false
}
