package schema

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// fleetChecker runs the checks of fleet.yaml that a schema cannot express and
// keeps the indexes that cluster files are checked against.
type fleetChecker struct {
	f    *file
	spec *FleetSpec

	providers map[string]int // name -> index
	teams     map[string]int
	// names with the position of their declaration, for messages
	providerPos, teamPos, sizePos, classPos map[string]position

	// used records which (provider, size) pairs effective clusters use, for
	// the pricing warnings.
	used map[[2]string]bool
}

func newFleetChecker(f *file) *fleetChecker {
	return &fleetChecker{
		f: f, spec: f.fleet,
		providers: map[string]int{}, teams: map[string]int{},
		providerPos: map[string]position{}, teamPos: map[string]position{},
		sizePos: map[string]position{}, classPos: map[string]position{},
		used: map[[2]string]bool{},
	}
}

func (c *fleetChecker) check() {
	f, s := c.f, c.spec
	for i, p := range s.Providers {
		idx := strconv.Itoa(i)
		pos, field := f.at("providers", idx, "name")
		if first, dup := c.providerPos[p.Name]; dup {
			f.errorf(pos, field, "duplicate-name", "duplicate provider name %q (first declared at line %d)", p.Name, first.line)
			continue
		}
		c.providers[p.Name], c.providerPos[p.Name] = i, pos
		switch p.Type {
		case ProviderAWS:
			if p.AWS == nil {
				pos, field := f.at("providers", idx, "type")
				f.errorf(pos, field, "provider", "a provider of type aws needs an aws block (region, subnets, ...)")
			}
			if p.VSphere != nil {
				pos, field := f.at("providers", idx, "vsphere")
				f.errorf(pos, field, "provider", "a provider of type aws takes no vsphere block")
			}
		case ProviderVSphere:
			if p.VSphere == nil {
				pos, field := f.at("providers", idx, "type")
				f.errorf(pos, field, "provider", "a provider of type vsphere needs a vsphere block (server, datacenter, ...)")
				break
			}
			if p.AWS != nil {
				pos, field := f.at("providers", idx, "aws")
				f.errorf(pos, field, "provider", "a provider of type vsphere takes no aws block")
			}
			v := p.VSphere
			if (v.ComputeCluster == "") == (v.ResourcePool == "") {
				pos, field := f.at("providers", idx, "vsphere")
				f.errorf(pos, field, "provider", "set exactly one of computeCluster and resourcePool")
			}
			if v.Insecure {
				pos, field := f.at("providers", idx, "vsphere", "insecure")
				f.warnf(pos, field, "tls", "TLS verification of %s is off: anyone on the path can read the vCenter credentials; prefer caFile", v.Server)
			}
		}
	}
	for i, t := range s.Teams {
		pos, field := f.at("teams", strconv.Itoa(i), "name")
		if first, dup := c.teamPos[t.Name]; dup {
			f.errorf(pos, field, "duplicate-name", "duplicate team name %q (first declared at line %d)", t.Name, first.line)
			continue
		}
		c.teams[t.Name], c.teamPos[t.Name] = i, pos
	}
	for _, name := range slices.Sorted(maps.Keys(s.Sizes)) {
		c.sizePos[name] = f.doc.keyPos("sizes", name)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Classes)) {
		c.classPos[name] = f.doc.keyPos("classes", name)
		c.checkClass(name, s.Classes[name])
	}
	for _, name := range slices.Sorted(maps.Keys(s.Pricing)) {
		c.checkPricing(name, s.Pricing[name])
	}
	if b := s.Status.Branch; b != "" {
		if msg := checkBranchName(b); msg != "" {
			pos, field := f.at("status", "branch")
			f.errorf(pos, field, "status", "%q is not a valid branch name: %s", b, msg)
		}
	}
}

func (c *fleetChecker) checkClass(name string, cl Class) {
	f := c.f
	seen := map[string]position{}
	roles := map[string]bool{}
	for i, p := range cl.Pools {
		idx := strconv.Itoa(i)
		pos, field := f.at("classes", name, "pools", idx, "name")
		if first, dup := seen[p.Name]; dup {
			f.errorf(pos, field, "duplicate-name", "duplicate pool name %q in class %s (first declared at line %d)", p.Name, name, first.line)
		}
		seen[p.Name] = pos
		if _, ok := c.spec.Sizes[p.Size]; !ok {
			pos, field := f.at("classes", name, "pools", idx, "size")
			f.errorf(pos, field, "reference", "unknown size %q%s; sizes in fleet.yaml: %s", p.Size, suggestion(p.Size, c.sizePos), orNone(namesOf(c.spec.Sizes)))
		}
		for _, r := range p.Roles {
			roles[r] = true
		}
	}
	for _, r := range []string{RoleEtcd, RoleControlPlane, RoleWorker} {
		if !roles[r] {
			pos, field := f.doc.keyPos("classes", name, "pools"), f.doc.fieldPath([]string{"classes", name, "pools"})
			f.errorf(pos, field, "roles", "class %s has no pool with the %s role: every cluster needs etcd, controlplane and worker nodes", name, r)
		}
	}
}

func (c *fleetChecker) checkPricing(name string, p Pricing) {
	f := c.f
	i, ok := c.providers[name]
	if !ok {
		pos := f.doc.keyPos("pricing", name)
		f.errorf(pos, f.doc.fieldPath([]string{"pricing", name}), "reference", "unknown provider %q%s; providers in fleet.yaml: %s", name, suggestion(name, c.providerPos), orNone(strings.Join(c.providerNames(), ", ")))
		return
	}
	typ := c.spec.Providers[i].Type
	if typ == ProviderAWS && (p.CPUHourly != nil || p.MemoryGiBHourly != nil) {
		key := "cpuHourly"
		if p.CPUHourly == nil {
			key = "memoryGiBHourly"
		}
		pos := f.doc.keyPos("pricing", name, key)
		f.errorf(pos, f.doc.fieldPath([]string{"pricing", name, key}), "pricing", "%s prices vSphere providers; %s is of type aws: use instanceHourly", key, name)
	}
	if typ == ProviderVSphere && p.InstanceHourly != nil {
		pos := f.doc.keyPos("pricing", name, "instanceHourly")
		f.errorf(pos, f.doc.fieldPath([]string{"pricing", name, "instanceHourly"}), "pricing", "instanceHourly prices AWS instance types; %s is of type vsphere: use cpuHourly and memoryGiBHourly", name)
	}
}

func (c *fleetChecker) providerNames() []string {
	names := make([]string, 0, len(c.spec.Providers))
	for _, p := range c.spec.Providers {
		names = append(names, p.Name)
	}
	return names
}

func (c *fleetChecker) teamNames() []string {
	names := make([]string, 0, len(c.spec.Teams))
	for _, t := range c.spec.Teams {
		names = append(names, t.Name)
	}
	return names
}

// checkPrices warns once per provider and instance type (or vSphere provider)
// that clusters use without a price: their cost is unknown.
func (c *fleetChecker) checkPrices() {
	f, s := c.f, c.spec
	for _, key := range sortedPairs(c.used) {
		prov, size := key[0], key[1]
		p := s.Providers[c.providers[prov]]
		price, priced := s.Pricing[prov]
		switch p.Type {
		case ProviderAWS:
			it := s.Sizes[size].AWS.InstanceType
			if _, ok := price.InstanceHourly[it]; !ok {
				pos, field := f.at("sizes", size, "aws", "instanceType")
				f.warnf(pos, field, "pricing", "no price for %s on provider %s (pricing.%s.instanceHourly): cost unknown", it, prov, prov)
			}
		case ProviderVSphere:
			if !priced || price.CPUHourly == nil || price.MemoryGiBHourly == nil {
				if c.used[[2]string{prov, ""}] {
					continue
				}
				c.used[[2]string{prov, ""}] = true
				pos, field := f.at("providers", strconv.Itoa(c.providers[prov]), "name")
				f.warnf(pos, field, "pricing", "no cpuHourly and memoryGiBHourly for %s in pricing: cost unknown", prov)
			}
		}
	}
}

// checkClusters checks each cluster file against fleet.yaml, expands its
// class, and checks names across files.
func (l *loader) checkClusters(c *fleetChecker, fleet *Fleet, files []*file) {
	byName := map[string]*file{}
	for _, f := range files {
		if f.lenient {
			c.checkLenient(f)
			continue
		}
		if f.spec == nil || f.diags.HasErrors() {
			continue
		}
		if first, dup := byName[f.spec.Name]; dup {
			pos, field := f.at("name")
			fp := first.doc.valuePos("name")
			f.errorf(pos, field, "duplicate-name", "duplicate cluster name %q: already declared at %s:%d:%d; cluster names are unique in the fleet", f.spec.Name, first.path, fp.line, fp.col)
			continue
		}
		byName[f.spec.Name] = f
		if base := path.Base(f.path); strings.TrimSuffix(base, path.Ext(base)) != f.spec.Name {
			pos, field := f.at("name")
			f.warnf(pos, field, "name", "the file is named %s but declares cluster %s: name the file %s.yaml so people find it", base, f.spec.Name, f.spec.Name)
		}
		if eff, ok := c.checkCluster(f); ok {
			fleet.Clusters = append(fleet.Clusters, &Cluster{Path: f.path, Spec: *f.spec, Effective: eff})
		}
	}
	slices.SortFunc(fleet.Clusters, func(a, b *Cluster) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
}

// checkLenient checks the references of a cluster file that failed the
// schema, dropping what repeats a schema error on the same field.
func (c *fleetChecker) checkLenient(f *file) {
	schemaErrs := slices.Clone(f.diags)
	before := len(f.diags)
	c.checkCluster(f)
	kept := f.diags[:before]
	for _, d := range f.diags[before:] {
		if d.Check == "roles" || d.Check == "name" || overlaps(d, schemaErrs) {
			continue
		}
		kept = append(kept, d)
	}
	f.diags = kept
}

// overlaps reports whether d concerns a field that one of ds already reports
// on, or a field inside or around it.
func overlaps(d Diagnostic, ds Diagnostics) bool {
	for _, e := range ds {
		if d.Field == e.Field || strings.HasPrefix(d.Field, e.Field+".") || strings.HasPrefix(d.Field, e.Field+"[") ||
			strings.HasPrefix(e.Field, d.Field+".") || strings.HasPrefix(e.Field, d.Field+"[") {
			return true
		}
	}
	return false
}

// checkCluster checks one cluster file and returns its effective spec.
func (c *fleetChecker) checkCluster(f *file) (EffectiveCluster, bool) {
	s, fs := f.spec, c.spec
	before := len(f.diags)
	errorAt := func(check, format string, tokens []string, args ...any) {
		pos, field := f.at(tokens...)
		f.errorf(pos, field, check, format, args...)
	}
	if _, ok := c.teams[s.Team]; !ok {
		errorAt("reference", "unknown team %q%s; teams in fleet.yaml: %s", []string{"team"}, s.Team, suggestion(s.Team, c.teamPos), orNone(strings.Join(c.teamNames(), ", ")))
	} else if s.Team != f.team {
		errorAt("layout", "the file is in clusters/%s/ but its team is %q: move it to clusters/%s/ or correct team", []string{"team"}, f.team, s.Team, s.Team)
	}
	pi, provOK := c.providers[s.Provider]
	if !provOK {
		errorAt("reference", "unknown provider %q%s; providers in fleet.yaml: %s", []string{"provider"}, s.Provider, suggestion(s.Provider, c.providerPos), orNone(strings.Join(c.providerNames(), ", ")))
	}
	class, classOK := fs.Classes[s.Class]
	if !classOK {
		errorAt("reference", "unknown class %q%s; classes in fleet.yaml: %s", []string{"class"}, s.Class, suggestion(s.Class, c.classPos), orNone(namesOf(fs.Classes)))
	}
	var ttl time.Duration
	if s.TTL != "" {
		ttl = parseTTL(s.TTL)
		if s.Protected {
			pos, field := f.at("ttl")
			f.warnf(pos, field, "ttl", "the cluster is protected, so it is never decommissioned and its ttl has no effect")
		}
	}
	c.checkLabels(f)
	access := c.effectiveAccess(f)

	if !classOK {
		return EffectiveCluster{}, false
	}
	// Pool overrides.
	overrides := map[string]int{}
	classPools := map[string]position{}
	for _, p := range class.Pools {
		classPools[p.Name] = position{}
	}
	for i, o := range s.Pools {
		idx := strconv.Itoa(i)
		if _, ok := classPools[o.Name]; !ok {
			errorAt("reference", "class %s has no pool %q%s; its pools: %s", []string{"pools", idx, "name"}, s.Class, o.Name, suggestion(o.Name, classPools), poolNames(class))
			continue
		}
		if first, dup := overrides[o.Name]; dup {
			fp := f.doc.valuePos("pools", strconv.Itoa(first), "name")
			errorAt("duplicate-name", "pool %q is overridden twice (first at line %d)", []string{"pools", idx, "name"}, o.Name, fp.line)
			continue
		}
		overrides[o.Name] = i
		if o.Size != "" {
			if _, ok := fs.Sizes[o.Size]; !ok {
				errorAt("reference", "unknown size %q%s; sizes in fleet.yaml: %s", []string{"pools", idx, "size"}, o.Size, suggestion(o.Size, c.sizePos), namesOf(fs.Sizes))
			}
		}
	}
	eff := EffectiveCluster{
		Name: s.Name, Team: s.Team, Provider: s.Provider, Class: s.Class,
		KubernetesVersion: class.KubernetesVersion, Access: access,
		TTL: ttl, TTLText: s.TTL, Protected: s.Protected, Paused: s.Paused, Labels: s.Labels,
	}
	if s.KubernetesVersion != "" {
		eff.KubernetesVersion = s.KubernetesVersion
	}
	var prov Provider
	if provOK {
		prov = fs.Providers[pi]
		eff.ProviderType = prov.Type
	}
	counts := map[string]int{}
	// where points at what decides a role's count: the first override of a
	// pool with that role that changes replicas, else the class reference.
	where := map[string][]string{}
	longest := ""
	for _, p := range class.Pools {
		ep := EffectivePool{Name: p.Name, Roles: slices.Clone(p.Roles), Replicas: p.Replicas, SizeName: p.Size}
		sizeAt := []string{"provider"}
		oi, overridden := overrides[p.Name]
		if overridden {
			o := s.Pools[oi]
			if o.Replicas != nil {
				ep.Replicas = *o.Replicas
				for _, r := range p.Roles {
					if where[r] == nil {
						where[r] = []string{"pools", strconv.Itoa(oi), "replicas"}
					}
				}
			}
			if o.Size != "" {
				ep.SizeName = o.Size
				sizeAt = []string{"pools", strconv.Itoa(oi), "size"}
			}
		}
		for _, r := range p.Roles {
			counts[r] += ep.Replicas
		}
		if len(p.Name) > len(longest) {
			longest = p.Name
		}
		if size, ok := fs.Sizes[ep.SizeName]; ok && provOK {
			c.used[[2]string{prov.Name, ep.SizeName}] = true
			ms, msg := resolveSize(prov, ep.SizeName, size)
			if msg != "" {
				errorAt("size", "pool %s: %s", sizeAt, p.Name, msg)
			}
			ep.Machine = ms
		}
		eff.Pools = append(eff.Pools, ep)
	}
	at := func(role string) []string {
		if w := where[role]; w != nil {
			return w
		}
		return []string{"class"}
	}
	switch n := counts[RoleEtcd]; {
	case n == 0:
		errorAt("roles", "the cluster has no etcd member: give a pool with the etcd role 1, 3 or 5 replicas", at(RoleEtcd))
	case n%2 == 0:
		errorAt("roles", "the cluster has %d etcd members: etcd needs an odd number (1, 3, 5, ...) to keep quorum", at(RoleEtcd), n)
	}
	if counts[RoleControlPlane] == 0 {
		errorAt("roles", "the cluster has no controlplane node: give a pool with the controlplane role at least 1 replica", at(RoleControlPlane))
	}
	if counts[RoleWorker] == 0 {
		errorAt("roles", "the cluster has no worker node: give a pool with the worker role at least 1 replica", at(RoleWorker))
	}
	// Machine names are <cluster>-<pool>-<hash5>-<n> and become host and
	// node names, which are DNS labels of at most 63 characters.
	maxReplicas := 0
	for _, p := range eff.Pools {
		maxReplicas = max(maxReplicas, p.Replicas)
	}
	if n := len(s.Name) + 1 + len(longest) + 7 + len(strconv.Itoa(max(maxReplicas, 1))); n > 63 {
		errorAt("name", "machine names such as %s-%s-xxxxx-%d would be %d characters long; host names allow 63: shorten the cluster name", []string{"name"}, s.Name, longest, maxReplicas, n)
	}
	return eff, len(f.diags) == before || !f.diags[before:].HasErrors()
}

// resolveSize maps a size onto a provider, filling in the provider's default
// image or template. It returns a message when the size cannot run there.
func resolveSize(p Provider, name string, s Size) (MachineSize, string) {
	switch p.Type {
	case ProviderAWS:
		if s.AWS == nil {
			return MachineSize{}, fmt.Sprintf("size %s has no aws mapping, so it cannot run on provider %s (type aws); add sizes.%s.aws", name, p.Name, name)
		}
		ms := MachineSize{InstanceType: s.AWS.InstanceType, Image: s.AWS.Image, DiskGiB: s.AWS.DiskGiB}
		if ms.Image == "" && p.AWS != nil {
			ms.Image = p.AWS.Image
		}
		if ms.Image == "" {
			return ms, fmt.Sprintf("no image for size %s on provider %s: set providers[].aws.image or sizes.%s.aws.image", name, p.Name, name)
		}
		return ms, ""
	case ProviderVSphere:
		if s.VSphere == nil {
			return MachineSize{}, fmt.Sprintf("size %s has no vsphere mapping, so it cannot run on provider %s (type vsphere); add sizes.%s.vsphere", name, p.Name, name)
		}
		ms := MachineSize{CPUs: s.VSphere.CPUs, MemoryMiB: s.VSphere.MemoryMiB, DiskGiB: s.VSphere.DiskGiB, Template: s.VSphere.Template}
		if ms.Template == "" && p.VSphere != nil {
			ms.Template = p.VSphere.Template
		}
		return ms, ""
	}
	return MachineSize{}, ""
}

// effectiveAccess checks access entries and expands them into group
// bindings. The owning team gets cluster-member unless the file binds the
// owning team itself.
func (c *fleetChecker) effectiveAccess(f *file) []EffectiveAccess {
	s := f.spec
	var out []EffectiveAccess
	ownerBound := false
	seen := map[[2]string]int{}
	add := func(a EffectiveAccess) {
		k := [2]string{a.Group, a.Role}
		if _, dup := seen[k]; dup {
			return
		}
		seen[k] = len(out)
		out = append(out, a)
	}
	entries := map[[3]string]int{}
	for i, a := range s.Access {
		idx := strconv.Itoa(i)
		switch {
		case (a.Group == "") == (a.Team == ""):
			pos, field := f.at("access", idx)
			f.errorf(pos, field, "access", "an access entry names exactly one of group (an LDAP DN) and team")
			continue
		case a.Team != "":
			ti, ok := c.teams[a.Team]
			if !ok {
				pos, field := f.at("access", idx, "team")
				f.errorf(pos, field, "reference", "unknown team %q%s; teams in fleet.yaml: %s", a.Team, suggestion(a.Team, c.teamPos), strings.Join(c.teamNames(), ", "))
				continue
			}
			if a.Team == s.Team {
				ownerBound = true
			}
			team := c.spec.Teams[ti]
			if len(team.Groups) == 0 {
				pos, field := f.at("access", idx, "team")
				f.warnf(pos, field, "access", "team %s has no groups in fleet.yaml, so this entry grants nothing", a.Team)
			}
			for _, g := range team.Groups {
				add(EffectiveAccess{Group: g, Role: a.Role, Team: a.Team})
			}
		default:
			add(EffectiveAccess{Group: a.Group, Role: a.Role})
		}
		k := [3]string{a.Group, a.Team, a.Role}
		if first, dup := entries[k]; dup {
			pos, field := f.at("access", idx)
			f.warnf(pos, field, "access", "the same binding as access[%d]", first)
		} else {
			entries[k] = i
		}
	}
	if !ownerBound {
		if ti, ok := c.teams[s.Team]; ok {
			for _, g := range c.spec.Teams[ti].Groups {
				add(EffectiveAccess{Group: g, Role: DefaultOwnerRole, Team: s.Team})
			}
		}
	}
	slices.SortFunc(out, func(a, b EffectiveAccess) int {
		if a.Group != b.Group {
			return strings.Compare(a.Group, b.Group)
		}
		return strings.Compare(a.Role, b.Role)
	})
	return out
}

func (c *fleetChecker) checkLabels(f *file) {
	for _, k := range slices.Sorted(maps.Keys(f.spec.Labels)) {
		v := f.spec.Labels[k]
		// Positions are looked up only for a problem: most labels are fine.
		field := func() string { return f.doc.fieldPath([]string{"labels", k}) }
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			f.errorf(f.doc.keyPos("labels", k), field(), "labels", "%q is not a valid label key: %s", k, strings.Join(errs, "; "))
		} else if strings.HasPrefix(k, "fleetd.io/") {
			f.errorf(f.doc.keyPos("labels", k), field(), "labels", "the fleetd.io/ prefix is reserved for the marks fleetd sets itself")
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			f.errorf(f.doc.valuePos("labels", k), field(), "labels", "%q is not a valid label value: %s", v, strings.Join(errs, "; "))
		}
	}
}

// parseTTL reads a schema-checked TTL such as 90m, 48h or 7d.
func parseTTL(s string) time.Duration {
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil {
		return 0
	}
	switch s[len(s)-1] {
	case 'm':
		return time.Duration(n) * time.Minute
	case 'h':
		return time.Duration(n) * time.Hour
	default:
		return time.Duration(n) * 24 * time.Hour
	}
}

// checkBranchName applies the rules of git check-ref-format that the schema's
// pattern cannot.
func checkBranchName(b string) string {
	switch {
	case strings.Contains(b, ".."):
		return "it contains '..'"
	case strings.Contains(b, "//"):
		return "it contains '//'"
	case strings.HasSuffix(b, "/") || strings.HasSuffix(b, "."):
		return "it ends with '/' or '.'"
	case strings.HasSuffix(b, ".lock"):
		return "it ends with '.lock'"
	case strings.Contains(b, "/."):
		return "a component starts with '.'"
	}
	return ""
}

func poolNames(c Class) string {
	names := make([]string, len(c.Pools))
	for i, p := range c.Pools {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

func sortedPairs(m map[[2]string]bool) [][2]string {
	keys := make([][2]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if a[0] != b[0] {
			return strings.Compare(a[0], b[0])
		}
		return strings.Compare(a[1], b[1])
	})
	return keys
}
