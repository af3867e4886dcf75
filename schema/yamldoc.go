package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// Limits on what one file may make the loader do. They keep a hostile file
// (an alias bomb, absurd nesting) from costing more than a large honest one.
const (
	maxFileSize = 1 << 20 // bytes
	maxDepth    = 64      // nesting of mappings and sequences
	// aliasAllowance is how many values alias expansion may add beyond the
	// values written out in the file.
	aliasAllowance = 10000
)

// position is a 1-based line and column in a file.
type position struct{ line, col int }

// document is one parsed YAML file: its value as JSON-compatible Go values
// (map[string]any, []any, string, int64, float64, bool, nil) and where each
// value and each mapping key came from.
type document struct {
	path string
	// root is the document's JSON value: read it through value. A document
	// kept in a parse cache may drop it (see compact).
	root any
	// rootMu guards root and compacted, since loads share cached documents.
	rootMu    sync.Mutex
	compacted bool
	// node is the parsed YAML, kept to locate values when a diagnostic
	// needs a position. A document read by fastParse has none until then:
	// data is parsed fully again on the first position asked for.
	node   *yaml.Node
	data   []byte
	budget int
	// vals and keys map a JSON pointer (tokens joined by ptrSep) to the
	// position of the value and of the mapping key that holds it. They are
	// built on the first position asked for: most files have no problem,
	// and then the loader never pays for them.
	indexOnce sync.Once
	vals      map[string]position
	keys      map[string]position
}

// value returns the document's JSON value, reading it again from data when
// compact dropped it.
func (d *document) value() any {
	d.rootMu.Lock()
	defer d.rootMu.Unlock()
	if d.root == nil && d.compacted {
		// data parsed with fastParse before, to this same value.
		d.root, _ = fastParse(d.data)
	}
	return d.root
}

// compact drops the JSON value of a document read by fastParse, which keeps
// its data: a parse cache keeps one document per cluster file, and after the
// file is decoded its value is needed only to name the field of a later
// diagnostic. At 10,000 clusters the values were the largest part of what
// the daemon keeps between syncs.
func (d *document) compact() {
	d.rootMu.Lock()
	defer d.rootMu.Unlock()
	if d.node == nil && d.data != nil {
		d.root, d.compacted = nil, true
	}
}

// index builds vals and keys by converting the node again, recording
// positions. The first conversion succeeded, so this one does too.
func (d *document) index() {
	d.indexOnce.Do(func() {
		d.vals, d.keys = map[string]position{}, map[string]position{}
		if d.node == nil {
			var root yaml.Node
			if err := yaml.NewDecoder(bytes.NewReader(d.data)).Decode(&root); err != nil {
				return // fastParse accepts only what the parser reads
			}
			d.node, d.budget = &root, countNodes(&root, 0)+aliasAllowance
		}
		c := converter{doc: d, budget: d.budget, record: true}
		_, _ = c.value(d.node, nil, 0)
	})
}

const ptrSep = "\x00"

func ptrKey(tokens []string) string { return strings.Join(tokens, ptrSep) }

// valuePos returns the position of the value at tokens, or of its nearest
// ancestor that has one.
func (d *document) valuePos(tokens ...string) position {
	d.index()
	for i := len(tokens); i >= 0; i-- {
		if p, ok := d.vals[ptrKey(tokens[:i])]; ok {
			return p
		}
	}
	return position{1, 1}
}

// keyPos returns the position of the mapping key that holds the value at
// tokens; for array elements and the root it is the value's position.
func (d *document) keyPos(tokens ...string) position {
	d.index()
	if p, ok := d.keys[ptrKey(tokens)]; ok {
		return p
	}
	return d.valuePos(tokens...)
}

// fieldPath renders tokens as a field path such as pools[1].replicas or
// labels["app.kubernetes.io/name"], using the document's values to tell
// array indexes from mapping keys.
func (d *document) fieldPath(tokens []string) string {
	var b strings.Builder
	v := d.value()
	for _, tok := range tokens {
		switch cur := v.(type) {
		case []any:
			b.WriteString("[" + tok + "]")
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(cur) {
				v = cur[i]
			} else {
				v = nil
			}
		default:
			writeKey(&b, tok)
			if m, ok := cur.(map[string]any); ok {
				v = m[tok]
			} else {
				v = nil
			}
		}
	}
	return b.String()
}

// writeKey appends a mapping key to a field path: .name, or ["a/b"] for a key
// that is not an identifier.
func writeKey(b *strings.Builder, key string) {
	if !isIdent(key) {
		b.WriteString("[" + strconv.Quote(key) + "]")
		return
	}
	if b.Len() > 0 {
		b.WriteByte('.')
	}
	b.WriteString(key)
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// parseError is a problem found while parsing a file, before any schema applies.
type parseError struct {
	pos   position
	field string
	check string
	msg   string
}

func (e *parseError) Error() string { return e.msg }

// parseDocument parses one YAML file that must hold exactly one document.
func parseDocument(path string, data []byte) (*document, *parseError) {
	if !utf8.Valid(data) {
		return nil, invalidUTF8(data)
	}
	// Editors on Windows may start a file with a byte order mark; YAML
	// allows it, and the parser would otherwise read it as content.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if v, ok := fastParse(data); ok {
		return &document{path: path, root: v, data: data}, nil
	}
	return parseFull(path, data)
}

// parseFull parses a file with the full YAML parser, keeping its node tree.
func parseFull(path string, data []byte) (*document, *parseError) {
	empty := &parseError{pos: position{1, 1}, check: "yaml", msg: "the file is empty: expected one YAML document"}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, empty
		}
		return nil, yamlSyntaxError(err, data)
	}
	if len(root.Content) == 0 || (root.Content[0].Kind == yaml.ScalarNode && root.Content[0].ShortTag() == "!!null" && root.Content[0].Value == "") {
		return nil, empty
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		line := extra.Line
		if extra.Kind == yaml.DocumentNode && len(extra.Content) > 0 {
			line = extra.Content[0].Line
		}
		return nil, &parseError{pos: position{docStartLine(data, line), 1}, check: "yaml",
			msg: "a second YAML document: a fleet file holds exactly one document; remove the '---' and what follows or move it to a file of its own"}
	case !errors.Is(err, io.EOF):
		return nil, yamlSyntaxError(err, data)
	}
	doc := &document{path: path, node: &root, budget: countNodes(&root, 0) + aliasAllowance}
	c := converter{doc: doc, budget: doc.budget}
	v, perr := c.value(&root, nil, 0)
	if perr != nil {
		return nil, perr
	}
	doc.root = v
	return doc, nil
}

// docStartLine finds the '---' line that starts the document whose content
// begins at line, so the error points at the separator a person typed.
func docStartLine(data []byte, line int) int {
	lines := strings.Split(string(data), "\n")
	for i := min(line, len(lines)) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "---") {
			return i + 1
		}
	}
	return line
}

func invalidUTF8(data []byte) *parseError {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return &parseError{pos: position{line, col}, check: "encoding", msg: "invalid UTF-8: fleet files must be UTF-8 text"}
}

// yamlSyntaxError turns the parser's message ("yaml: line 4: found character
// that cannot start any token") into a located diagnostic.
func yamlSyntaxError(err error, data []byte) *parseError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	col := 1
	lines := strings.Split(string(data), "\n")
	if line == 0 {
		line = 1
	}
	if line <= len(lines) {
		l := lines[line-1]
		if i := strings.IndexByte(l, '\t'); i >= 0 && strings.TrimLeft(l[:i], " ") == "" {
			return &parseError{pos: position{line, i + 1}, check: "yaml",
				msg: "YAML syntax error: a tab indents this line; YAML allows only spaces for indentation"}
		}
		col = len(l) - len(strings.TrimLeft(l, " ")) + 1
	}
	if strings.HasPrefix(msg, "did not find expected") {
		// The parser names the block it was in, not the line that broke it:
		// look for the line whose indentation fits no level of the block.
		if bad, ind := misindented(lines, line); bad > 0 {
			return &parseError{pos: position{bad, ind + 1}, check: "yaml",
				msg: fmt.Sprintf("YAML syntax error: this line's indentation (%d spaces) matches no level of the block that starts at line %d: indent it like the lines it belongs with", ind, line)}
		}
		msg += " in the block that starts here: check the indentation of its lines"
	}
	return &parseError{pos: position{line, col}, check: "yaml", msg: "YAML syntax error: " + msg}
}

// misindented finds the first line after start whose indentation matches no
// open level: not the indentation of an enclosing or sibling line, nor of
// the content of a list item, nor deeper than a line that opens a block.
// It returns the line (1-based) and its indentation, or 0.
func misindented(lines []string, start int) (int, int) {
	levels := map[int]bool{}
	prevIndent, prevOpens := -1, false
	for i := 0; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], " \r")
		t := strings.TrimLeft(l, " ")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		ind := len(l) - len(t)
		if i >= start && !levels[ind] && !(prevOpens && ind > prevIndent) {
			return i + 1, ind
		}
		// Going back to a shallower level closes the deeper ones.
		for k := range levels {
			if k > ind {
				delete(levels, k)
			}
		}
		levels[ind] = true
		// A list item's content starts after "- ".
		for rest, d := t, ind; strings.HasPrefix(rest, "- "); {
			trimmed := strings.TrimLeft(rest[2:], " ")
			d += len(rest) - len(trimmed)
			levels[d] = true
			rest = trimmed
		}
		prevIndent = ind
		prevOpens = strings.HasSuffix(t, ":") || t == "-" || strings.HasSuffix(t, "|") || strings.HasSuffix(t, ">")
		if strings.HasSuffix(t, "|") || strings.HasSuffix(t, ">") || strings.HasSuffix(t, "|-") || strings.HasSuffix(t, ">-") {
			// A block scalar's text may be indented freely: give up.
			return 0, 0
		}
	}
	return 0, 0
}

func countNodes(n *yaml.Node, depth int) int {
	if n == nil || depth > maxDepth+2 {
		return 0
	}
	c := 1
	for _, ch := range n.Content {
		c += countNodes(ch, depth+1)
	}
	return c
}

// converter turns a yaml.Node tree into JSON-compatible values, recording
// positions, refusing duplicate keys and bounding alias expansion.
type converter struct {
	doc    *document
	budget int
	// record makes the converter note every value's and key's position.
	record bool
}

func (c *converter) fail(n *yaml.Node, tokens []string, check, format string, args ...any) *parseError {
	return &parseError{pos: position{n.Line, n.Column}, field: c.doc.fieldPathPartial(tokens), check: check, msg: fmt.Sprintf(format, args...)}
}

// fieldPathPartial renders tokens while the document is still being built: it
// cannot look at values, so numeric tokens are taken as indexes.
func (d *document) fieldPathPartial(tokens []string) string {
	var b strings.Builder
	for _, tok := range tokens {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		writeKey(&b, tok)
	}
	return b.String()
}

func (c *converter) value(n *yaml.Node, tokens []string, depth int) (any, *parseError) {
	c.budget--
	if c.budget < 0 {
		return nil, c.fail(n, tokens, "alias-bomb", "aliases expand to too many values (more than %d beyond the file's own): refusing a possible alias bomb", aliasAllowance)
	}
	if depth > maxDepth {
		return nil, c.fail(n, tokens, "yaml", "values nest deeper than %d levels", maxDepth)
	}
	if c.record {
		key := ptrKey(tokens)
		if _, seen := c.doc.vals[key]; !seen {
			c.doc.vals[key] = position{n.Line, n.Column}
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.value(n.Content[0], tokens, depth)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, c.fail(n, tokens, "yaml", "alias to an unknown anchor")
		}
		v, err := c.value(n.Alias, tokens, depth+1)
		if err != nil && err.check == "alias-bomb" {
			// Point at the outermost alias whose expansion ran out of
			// budget: the place a person wrote, not a node deep inside.
			err.pos, err.field = position{n.Line, n.Column}, c.doc.fieldPathPartial(tokens)
			err.msg = fmt.Sprintf("alias *%s expands to too many values (more than %d beyond the file's own): refusing a possible alias bomb", n.Value, aliasAllowance)
		}
		return v, err
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			v, err := c.value(item, append(tokens[:len(tokens):len(tokens)], strconv.Itoa(i)), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		return c.mapping(n, tokens, depth)
	case yaml.ScalarNode:
		return c.scalar(n, tokens)
	}
	return nil, c.fail(n, tokens, "yaml", "unsupported YAML node")
}

func (c *converter) mapping(n *yaml.Node, tokens []string, depth int) (any, *parseError) {
	out := make(map[string]any, len(n.Content)/2)
	first := make(map[string]position, len(n.Content)/2)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		kn := k
		if kn.Kind == yaml.AliasNode && kn.Alias != nil {
			kn = kn.Alias
		}
		if kn.Kind != yaml.ScalarNode {
			return nil, c.fail(k, tokens, "yaml", "a mapping key must be a plain value, not a list or mapping")
		}
		name := kn.Value
		child := append(tokens[:len(tokens):len(tokens)], name)
		if p, dup := first[name]; dup {
			return nil, c.fail(k, child, "duplicate-key", "duplicate key %q (first defined at line %d): YAML keys must be unique, remove one", name, p.line)
		}
		first[name] = position{k.Line, k.Column}
		if c.record {
			c.doc.keys[ptrKey(child)] = position{k.Line, k.Column}
		}
		val, err := c.value(v, child, depth+1)
		if err != nil {
			return nil, err
		}
		out[name] = val
	}
	// Merge keys (<<: *anchor) add the keys the mapping does not set itself.
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			v, err := c.value(src, tokens, depth+1)
			if err != nil {
				return nil, err
			}
			mm, ok := v.(map[string]any)
			if !ok {
				return nil, c.fail(src, tokens, "yaml", "a merge key (<<) must refer to a mapping")
			}
			for k, val := range mm {
				if _, set := out[k]; !set {
					out[k] = val
				}
			}
		}
	}
	return out, nil
}

func (c *converter) scalar(n *yaml.Node, tokens []string) (any, *parseError) {
	tag := n.ShortTag()
	if n.Style == 0 {
		// A plain scalar: resolved by YAML 1.2's core schema (yaml12.go),
		// not by the parser's YAML 1.1 rules.
		switch resolvePlain(n.Value) {
		case scalarNull:
			return nil, nil
		case scalarBool:
			return n.Value[0] == 't' || n.Value[0] == 'T', nil
		case scalarInt:
			tag = "!!int"
		case scalarFloat:
			tag = "!!float"
		default:
			return n.Value, nil
		}
	}
	switch tag {
	case "!!null":
		return nil, nil
	case "!!str", "!!timestamp":
		return n.Value, nil
	case "!!bool":
		switch n.Value {
		case "true", "True", "TRUE":
			return true, nil
		case "false", "False", "FALSE":
			return false, nil
		}
		return nil, c.fail(n, tokens, "yaml", "invalid boolean %q: write true or false", n.Value)
	case "!!int":
		if resolvePlain(n.Value) != scalarInt {
			return nil, c.fail(n, tokens, "yaml", "invalid integer %q%s", n.Value, plainFormHint(n.Value))
		}
		i, ok := parseCoreInt(n.Value)
		if !ok {
			return nil, c.fail(n, tokens, "yaml", "integer %s is out of range", n.Value)
		}
		return i, nil
	case "!!float":
		if k := resolvePlain(n.Value); k != scalarFloat && k != scalarInt {
			return nil, c.fail(n, tokens, "yaml", "invalid number %q%s", n.Value, plainFormHint(n.Value))
		}
		f, ok := parseCoreFloat(n.Value)
		if !ok {
			return nil, c.fail(n, tokens, "yaml", "%s is not a finite number: numbers in fleet files are finite, such as 0.25 or 1e3", n.Value)
		}
		return f, nil
	default:
		return nil, c.fail(n, tokens, "yaml", "unsupported YAML tag %s: fleet files use plain strings, numbers, booleans, lists and mappings", tag)
	}
}

// plainFormHint suggests the plain decimal form of a YAML 1.1 number.
func plainFormHint(s string) string {
	if p := yaml11Number(s); p != "" {
		return fmt.Sprintf(": YAML 1.2 has no such number; write %s", p)
	}
	return ""
}

// ParseYAML reads one YAML document into JSON-compatible values (map[string]any,
// []any, string, int64, float64, bool, nil) the way fleet files are read:
// YAML 1.2's core schema, no duplicate keys, bounded nesting and alias
// expansion, exactly one document, valid UTF-8. fleetd's other YAML (status
// files) is read with it, so every file fleetd reads means the same to it and
// to an editor.
func ParseYAML(data []byte) (any, error) {
	doc, perr := parseDocument("", data)
	if perr != nil {
		if perr.pos.line > 0 {
			return nil, fmt.Errorf("line %d: %s", perr.pos.line, perr.msg)
		}
		return nil, errors.New(perr.msg)
	}
	return doc.value(), nil
}
