// Package git follows the fleet repo (clone once, incremental fetches, a
// commit's tree as an fs.FS) and writes status back as commits (go-git).
package git
