// Package schema is the fleet API: the Go types of fleet.yaml and cluster files,
// their embedded JSON schemas, and Load, which reads a fleet repo from an fs.FS
// and reports every problem at the file, line and column of the YAML node that
// is wrong.
package schema
