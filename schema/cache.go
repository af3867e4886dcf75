package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"slices"
	"sync"
)

// ContentIDFS is a file system that names a file's content without reading
// it, such as a git tree naming a file by its blob hash: two files with the
// same ID have the same bytes.
type ContentIDFS interface {
	fs.FS
	ContentID(name string) (string, error)
}

// ParseCache keeps what Load made of each file's content (its parse, schema
// verdict and decoded spec), so that a daemon loading a commit that changed
// one file of thousands parses only that file. Cross-file checks still run
// on every load. A ParseCache keeps only the files of the latest load; it is
// safe for one Load at a time.
type ParseCache struct {
	mu      sync.Mutex
	entries map[string]*parsed
	seen    map[string]bool
	// Hits and Misses count lookups of the latest load.
	Hits, Misses int
}

// parsed is one file's parse, shared by the loads that find the same content.
// Nothing mutates it after it is stored.
type parsed struct {
	doc     *document
	diags   Diagnostics
	fleet   *FleetSpec
	spec    *ClusterSpec
	lenient bool
}

// WithParseCache makes Load reuse and fill c.
func WithParseCache(c *ParseCache) Option {
	return func(l *loader) { l.cache = c }
}

func (c *ParseCache) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*parsed{}
	}
	c.seen = map[string]bool{}
	c.Hits, c.Misses = 0, 0
}

// end forgets the files the latest load did not have.
func (c *ParseCache) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if !c.seen[k] {
			delete(c.entries, k)
		}
	}
	c.seen = nil
}

func (c *ParseCache) get(key string) *parsed {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[key] = true
	p := c.entries[key]
	if p != nil {
		c.Hits++
	} else {
		c.Misses++
	}
	return p
}

func (c *ParseCache) put(key string, p *parsed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[key] = true
	c.entries[key] = p
}

// cacheKey names a file's content: its ContentID when the file system has
// one (nothing is read), else a digest of data, which is read then.
func (l *loader) cacheKey(path string) (key string, data []byte, err error) {
	if cf, ok := l.fsys.(ContentIDFS); ok {
		if id, err := cf.ContentID(path); err == nil {
			return path + "\x00" + id, nil, nil
		}
	}
	data, err = readBounded(l.fsys, path)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(data)
	return path + "\x00" + hex.EncodeToString(sum[:]), data, nil
}

// fromCache fills f from the cache and reports whether it could.
func (f *file) fromCache(p *parsed) {
	f.doc, f.fleet, f.spec, f.lenient = p.doc, p.fleet, p.spec, p.lenient
	f.diags = append(f.diags, slices.Clone(p.diags)...)
}

func (f *file) toCache() *parsed {
	return &parsed{doc: f.doc, diags: slices.Clone(f.diags), fleet: f.fleet, spec: f.spec, lenient: f.lenient}
}
