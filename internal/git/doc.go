// Package git follows the fleet repo (clone once, incremental fetches, a
// commit's tree as an fs.FS) and writes status back as commits (go-git).
//
// A Repo keeps a bare clone of the tracked branch in a work directory. Fetch
// (go-git's Remote.FetchContext) lists the remote's references and downloads
// only when the branch moved;
// FS reads a commit's tree without a checkout; CreationTimes tells when each
// cluster file appeared on the branch, incrementally across syncs.
// FetchResult.Desired and DesiredChanged tell fleetd's own status-only
// commits apart from changes of the desired state.
//
// WriteStatus replaces status/ on the status branch with one commit built
// straight in the object store and pushes it without force, as a
// compare-and-swap on the head it was built on; a lost race is retried on
// the new head. Nothing outside status/ is ever changed.
//
// What go-git offers is used; what it lacks, or does too slowly for a fleet
// repo of 10,000 commits, is written here and says why beside the code: the
// first-parent history walk and its tree parser (rawtree.go), trees as an
// fs.FS, status trees and their receive-pack push (status.go), geometric
// pack compaction (compact.go) and the pack checksum check at Open
// (check.go).
//
// Remotes are https:// (token from a file), ssh:// or user@host:path (key
// from a file, known_hosts checked), file:// or a local path. Errors are
// *Error values naming the step, the remote without credentials and the
// branch; no secret ever appears in an error or a log.
package git
