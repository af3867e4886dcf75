package reconcile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetd/fleetd/schema"
)

// Desired is the fleet a sync converges to, as the git layer supplies it.
type Desired struct {
	// Fleet is the loaded fleet; nil when fleet.yaml failed to load, and then
	// nothing is planned (Diagnostics say why).
	Fleet       *schema.Fleet
	Diagnostics schema.Diagnostics
	// Revision is the commit the fleet was read from.
	Revision string
	// CreatedAt is, by cluster name, the commit time of the commit that
	// created the cluster's file: a temporary cluster expires TTL after it.
	CreatedAt map[string]time.Time
	// Held are clusters whose file is rejected at Revision. A held cluster
	// keeps its last valid spec and is never decommissioned because of the
	// rejection.
	Held []Held
	// ChangedBy is, by cluster name, the newest commit that changed the
	// cluster's file: the cause of a TTL expiry, which policy.confirmPrune
	// names to release the prune guard. Unknown ones are taken as Revision.
	ChangedBy map[string]string
	// Removed is, by cluster name, what the history says of every cluster
	// whose file was removed and that no file declares now: the facts a
	// decommission rests on. A cluster observed without a file and without
	// an entry here is unproven (see Unproven) and never decommissioned.
	Removed Removals
	// FactsError says why the safety facts above could not be established
	// from git history (no clone, a shallow or unreadable history). While it
	// is set, no removed cluster is decommissioned and no TTL expires.
	FactsError string
	// Stalled are, by cluster name, clusters whose last sync at this
	// Revision failed in a way only a change can fix (StalledError), with
	// the error: their actions are not retried until the revision changes.
	Stalled map[string]string
	// Backoff are, by cluster name, clusters whose last attempt failed in a
	// way that may pass (TransientError) and whose backoff has not run out
	// at the sync's time: their actions are held back, so a throttled
	// provider is not called again at every sync.
	Backoff map[string]Backoff
}

// Backoff holds a cluster's actions back after transient failures.
type Backoff struct {
	// Until is when the cluster's actions run again.
	Until time.Time
	// Failures counts the consecutive failed attempts.
	Failures int
	// Reason is the last failure.
	Reason string
}

// Removal is what the git history says of a cluster whose file was
// removed: the commit that removed it and whether the cluster was protected
// in the last version that declared it.
type Removal struct {
	// Path is the removed file, in the fleet repo.
	Path string
	// By is the commit that removed it: policy.confirmPrune names it to
	// release the prune guard. "" when a person's working directory lacks a
	// file its commit has (the removal being planned), and then the synced
	// revision stands for it.
	By string
	// Protected says the last version that declared the cluster set
	// protected: true. Such a cluster is never decommissioned.
	Protected bool
	// Unreadable says why that last version could not be read ("" when it
	// was): while it is unknown whether the cluster was protected, it is
	// never decommissioned.
	Unreadable string
}

// Removals are removal facts by cluster name.
type Removals map[string]Removal

// Unproven says why the cluster observed without a file may not be
// decommissioned ("" when its removal is proven): the history shows no file
// that declared it, or its last version could not be read.
func (d *Desired) Unproven(cluster string) string {
	r, ok := d.Removed[cluster]
	switch {
	case !ok:
		return fmt.Sprintf("no cluster file in the history of %s declares %s: fleetd cannot establish that its file was removed, or whether it was protected, so it is never decommissioned; to decommission it, commit a file for it and remove that file in a later commit", describeRevision(d.Revision), cluster)
	case r.Unreadable != "":
		return fmt.Sprintf("cannot read whether %s was protected in the last version of %s: %s; it is never decommissioned while that is unknown", cluster, r.Path, r.Unreadable)
	}
	return ""
}

// RemovedBy is the commit that removed the cluster's file, or the synced
// revision when the history does not name one.
func (d *Desired) RemovedBy(cluster string) string {
	return cmp.Or(d.Removed[cluster].By, d.Revision)
}

func describeRevision(rev string) string {
	if rev == "" {
		return "the fleet repo"
	}
	if len(rev) > 7 {
		rev = rev[:7]
	}
	return "commit " + rev
}

// Held is a cluster whose file is rejected now.
type Held struct {
	// Path is the rejected file.
	Path string
	// Last is the cluster's last valid version (from an earlier revision);
	// nil when it never had one, and then nothing is done for it.
	Last *schema.Cluster
	// Revision is the commit Last was read from.
	Revision string
	// Diagnostics say why the file is rejected.
	Diagnostics schema.Diagnostics
}

// Template is everything that makes machines of a pool alike. Machines whose
// template differs from their pool's are replaced.
type Template struct {
	Hash              string             `json:"hash"`
	Provider          string             `json:"provider"`
	KubernetesVersion string             `json:"kubernetesVersion"`
	Roles             []string           `json:"roles"`
	Size              schema.MachineSize `json:"size"`
}

// HasRole reports whether machines of the template carry role.
func (t *Template) HasRole(role string) bool { return slices.Contains(t.Roles, role) }

// NewTemplate returns the template of a pool of cluster c, with its hash.
func NewTemplate(c *schema.EffectiveCluster, p *schema.EffectivePool) Template {
	roles := p.Roles
	if !slices.IsSorted(roles) {
		roles = slices.Clone(roles)
		slices.Sort(roles)
	}
	t := Template{Provider: c.Provider, KubernetesVersion: c.KubernetesVersion, Roles: roles, Size: p.Machine}
	t.Hash = TemplateHash(t)
	return t
}

// TemplateHash returns 16 hex digits of the SHA-256 of the template's
// provider, resolved size, sorted roles and Kubernetes version. Its first five
// digits go into machine names.
func TemplateHash(t Template) string {
	roles := t.Roles
	if !slices.IsSorted(roles) {
		roles = slices.Clone(roles)
		slices.Sort(roles)
	}
	s := t.Size
	var buf [512]byte
	b := append(buf[:0], "v1\x00"...)
	for _, f := range []string{t.Provider, t.KubernetesVersion} {
		b = append(b, f...)
		b = append(b, 0)
	}
	for i, r := range roles {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	b = append(b, 0)
	b = append(b, s.InstanceType...)
	b = append(b, 0)
	b = append(b, s.Image...)
	b = append(b, 0)
	for _, n := range []int{s.CPUs, s.MemoryMiB, s.DiskGiB} {
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, 0)
	}
	b = append(b, s.Template...)
	b = append(b, 0)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// MachineName returns the name of the machine with ordinal n of a pool:
// <cluster>-<pool>-<hash5>-<n> (schema.MachineName, which the loader's
// length check uses too).
func MachineName(cluster, pool, templateHash string, n int) string {
	return schema.MachineName(cluster, pool, templateHash, n)
}

func machinePrefix(cluster, pool, templateHash string) string {
	return schema.MachinePrefix(cluster, pool, templateHash)
}

// looksLikeMachineName reports whether name has the shape of a machine name of
// cluster: <cluster>-<pool>-<5 hex>-<n>.
func looksLikeMachineName(cluster, name string) bool {
	rest, ok := strings.CutPrefix(name, cluster+"-")
	if !ok {
		return false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 || i+1 == len(rest) {
		return false
	}
	if _, err := strconv.ParseUint(rest[i+1:], 10, 32); err != nil {
		return false
	}
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '-')
	if j < 1 || len(rest)-j-1 != 5 {
		return false
	}
	for _, c := range rest[j+1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// principalID turns an LDAP group DN into a Rancher principal ID for the
// fleet's auth provider.
func principalID(authProvider, dn string) string {
	if authProvider == "" {
		authProvider = "openldap"
	}
	return authProvider + "_group://" + dn
}
