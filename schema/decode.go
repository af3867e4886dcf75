package schema

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"
)

// decode stores a document's JSON-compatible value (map[string]any, []any,
// string, int64, float64, bool, nil) into the Go value target points to,
// matching object keys to json tag names. Strict decoding refuses unknown
// fields and values of the wrong type, as a json.Decoder with
// DisallowUnknownFields would, without a round trip through JSON text. A
// lenient decode skips what does not fit and fills the rest.
func decode(v any, target any, strict bool) error {
	// path has room to grow: appending to it reuses one backing array, as
	// each call uses its path only while it runs.
	return decodeValue(v, reflect.ValueOf(target).Elem(), strict, make([]string, 0, 32))
}

// indexTokens are the path tokens of the first list indexes, made once.
var indexTokens = func() []string {
	out := make([]string, 64)
	for i := range out {
		out[i] = fmt.Sprintf("[%d]", i)
	}
	return out
}()

func indexToken(i int) string {
	if i < len(indexTokens) {
		return indexTokens[i]
	}
	return fmt.Sprintf("[%d]", i)
}

// Decode stores a value read by ParseYAML into the Go value target points
// to, matching object keys to json tag names exactly. Unknown fields and
// values of the wrong type are errors; a time.Time is read from an RFC 3339
// string. It is the strict half of reading fleetd's own YAML files.
func Decode(v any, target any) error {
	return decode(v, target, true)
}

var timeType = reflect.TypeFor[time.Time]()

func decodeValue(v any, rv reflect.Value, strict bool, path []string) error {
	if v == nil {
		rv.SetZero()
		return nil
	}
	mismatch := func() error {
		if !strict {
			return nil
		}
		return fmt.Errorf("%s: cannot store %T in a %s", where(path), v, rv.Type())
	}
	if rv.Type() == timeType {
		str, ok := v.(string)
		if !ok {
			return mismatch()
		}
		t, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			if !strict {
				return nil
			}
			return fmt.Errorf("%s: %q is not an RFC 3339 time", where(path), str)
		}
		rv.Set(reflect.ValueOf(t))
		return nil
	}
	switch rv.Kind() {
	case reflect.Pointer:
		elem := reflect.New(rv.Type().Elem())
		if err := decodeValue(v, elem.Elem(), strict, path); err != nil {
			return err
		}
		rv.Set(elem)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return mismatch()
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return mismatch()
		}
		rv.SetBool(b)
	case reflect.Int, reflect.Int64:
		switch n := v.(type) {
		case int64:
			rv.SetInt(n)
		case float64:
			if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
				return mismatch()
			}
			rv.SetInt(int64(n))
		default:
			return mismatch()
		}
	case reflect.Float64:
		switch n := v.(type) {
		case int64:
			rv.SetFloat(float64(n))
		case float64:
			rv.SetFloat(n)
		default:
			return mismatch()
		}
	case reflect.Slice:
		items, ok := v.([]any)
		if !ok {
			return mismatch()
		}
		out := reflect.MakeSlice(rv.Type(), len(items), len(items))
		for i, item := range items {
			if err := decodeValue(item, out.Index(i), strict, append(path, indexToken(i))); err != nil {
				return err
			}
		}
		rv.Set(out)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok || rv.Type().Key().Kind() != reflect.String {
			return mismatch()
		}
		out := reflect.MakeMapWithSize(rv.Type(), len(m))
		elemType := rv.Type().Elem()
		for k, item := range m {
			ev := reflect.New(elemType).Elem()
			if err := decodeValue(item, ev, strict, append(path, k)); err != nil {
				return err
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()), ev)
		}
		rv.Set(out)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return mismatch()
		}
		fields := fieldsOf(rv.Type())
		for k, item := range m {
			i, known := fields[k]
			if !known {
				if strict {
					return fmt.Errorf("%s: unknown field %q", where(path), k)
				}
				continue
			}
			if err := decodeValue(item, rv.Field(i), strict, append(path, k)); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s: unsupported type %s", where(path), rv.Type())
	}
	return nil
}

// where renders a decode path such as pools[0].replicas, with a colon, or
// nothing at the root.
func where(path []string) string {
	var b strings.Builder
	for _, p := range path {
		if b.Len() > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	if b.Len() == 0 {
		return "at the top"
	}
	return b.String()
}

var fieldCache sync.Map // reflect.Type -> map[string]int

// fieldsOf maps the json names of a struct's fields to their indexes.
func fieldsOf(t reflect.Type) map[string]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]int)
	}
	m := map[string]int{}
	for i := range t.NumField() {
		if n := jsonName(t.Field(i)); n != "" {
			m[n] = i
		}
	}
	fieldCache.Store(t, m)
	return m
}
