// Package git follows the fleet repo (clone once, incremental fetches, a
// commit's tree as an fs.FS) and writes status back as commits (go-git).
//
// A Repo keeps a bare clone of the tracked branch in a work directory. Fetch
// lists the remote's references and downloads only when the branch moved;
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
// Remotes are https:// (token from a file), ssh:// or user@host:path (key
// from a file, known_hosts checked), file:// or a local path. Errors are
// *Error values naming the step, the remote without credentials and the
// branch; no secret ever appears in an error or a log.
package git
