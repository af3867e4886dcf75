package schema

import (
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"

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
	// roles are the cluster roles an access entry may name.
	roles map[string]bool
	// evenEtcd lists, per class with an even etcd count, the cluster files
	// that inherit the count unchanged.
	evenEtcd map[string][]*file
}

func newFleetChecker(f *file) *fleetChecker {
	return &fleetChecker{
		f: f, spec: f.fleet,
		providers: map[string]int{}, teams: map[string]int{},
		providerPos: map[string]position{}, teamPos: map[string]position{},
		sizePos: map[string]position{}, classPos: map[string]position{},
		used: map[[2]string]bool{}, roles: map[string]bool{}, evenEtcd: map[string][]*file{},
	}
}

func (c *fleetChecker) check() {
	f, s := c.f, c.spec
	for _, r := range BuiltinClusterRoles {
		c.roles[r] = true
	}
	for _, r := range s.ClusterRoles {
		c.roles[r] = true
	}
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
		if t.BudgetMonthly != nil {
			if msg := numberProblem(*t.BudgetMonthly, MaxBudgetMonthly); msg != "" {
				pos, field := f.at("teams", strconv.Itoa(i), "budgetMonthly")
				f.errorf(pos, field, "budget", "%s", msg)
			}
		}
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

// numberProblem says what is wrong with a price or budget beyond what the
// schema bounds, or "": it keeps every accepted number finite through cost
// arithmetic and JSON, even for a FleetSpec that did not come through the
// schema.
func numberProblem(v, maximum float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "is not a finite number"
	case v < 0:
		return "is negative"
	case v > maximum:
		return fmt.Sprintf("%s is too large: the maximum is %s", strconv.FormatFloat(v, 'g', -1, 64), strconv.FormatFloat(maximum, 'f', -1, 64))
	}
	return ""
}

func (c *fleetChecker) checkPricing(name string, p Pricing) {
	f := c.f
	check := func(v float64, tokens ...string) {
		if msg := numberProblem(v, MaxHourlyPrice); msg != "" {
			pos, field := f.at(append([]string{"pricing", name}, tokens...)...)
			f.errorf(pos, field, "pricing", "%s", msg)
		}
	}
	for _, it := range slices.Sorted(maps.Keys(p.InstanceHourly)) {
		check(p.InstanceHourly[it], "instanceHourly", it)
	}
	if p.CPUHourly != nil {
		check(*p.CPUHourly, "cpuHourly")
	}
	if p.MemoryGiBHourly != nil {
		check(*p.MemoryGiBHourly, "memoryGiBHourly")
	}
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
	// The file added first keeps a name; a later one is the duplicate.
	files = slices.Clone(files)
	slices.SortStableFunc(files, l.creationOrder)
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
		// A role is checked whatever else is wrong with its entry.
		if d.Check == "roles" || d.Check == "name" || (d.Check != "role" && overlaps(d, schemaErrs)) {
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
	if s.TTL != "" {
		if _, ok := ParseTTL(s.TTL); !ok {
			errorAt("ttl", "%q is not a valid ttl: want a duration in minutes, hours or days such as 90m, 48h or 7d, at most %d days", []string{"ttl"}, s.TTL, MaxTTLDays)
		}
		if s.Protected {
			pos, field := f.at("ttl")
			f.warnf(pos, field, "ttl", "the cluster is protected, so it is never decommissioned and its ttl has no effect")
		}
	}
	c.checkLabels(f)
	c.checkAccess(f)

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
	eff := Expand(fs, s)
	var prov Provider
	if provOK {
		prov = fs.Providers[pi]
	}
	counts := map[string]int{}
	// where points at what decides a role's count: the first override of a
	// pool with that role that changes replicas, else the class reference.
	where := map[string][]string{}
	longest, maxReplicas := "", 0
	for _, ep := range eff.Pools {
		sizeAt := []string{"provider"}
		if oi, overridden := overrides[ep.Name]; overridden {
			o := s.Pools[oi]
			if o.Replicas != nil {
				for _, r := range ep.Roles {
					if where[r] == nil {
						where[r] = []string{"pools", strconv.Itoa(oi), "replicas"}
					}
				}
			}
			if o.Size != "" {
				sizeAt = []string{"pools", strconv.Itoa(oi), "size"}
			}
		}
		for _, r := range ep.Roles {
			counts[r] += ep.Replicas
		}
		if len(ep.Name) > len(longest) {
			longest = ep.Name
		}
		maxReplicas = max(maxReplicas, ep.Replicas)
		if size, ok := fs.Sizes[ep.SizeName]; ok && provOK {
			c.used[[2]string{prov.Name, ep.SizeName}] = true
			if _, msg := resolveSize(prov, ep.SizeName, size); msg != "" {
				errorAt("size", "pool %s: %s", sizeAt, ep.Name, msg)
			}
		}
	}
	inherited := false
	at := func(role string) []string {
		if w := where[role]; w != nil {
			return w
		}
		return []string{"class"}
	}
	switch n := counts[RoleEtcd]; {
	case n == 0:
		errorAt("roles", "the cluster has no etcd member: give a pool with the etcd role 1, 3 or 5 replicas", at(RoleEtcd))
	case n%2 == 0 && where[RoleEtcd] == nil:
		// The class itself has an even etcd count: reported once, at the
		// class in fleet.yaml, naming every cluster that inherits it.
		if !f.lenient {
			c.evenEtcd[s.Class] = append(c.evenEtcd[s.Class], f)
		}
		inherited = true
	case n%2 == 0:
		errorAt("roles", "the cluster has %d etcd members: etcd needs an odd number (1, 3, 5, ...) to keep quorum", at(RoleEtcd), n)
	}
	if counts[RoleControlPlane] == 0 {
		errorAt("roles", "the cluster has no controlplane node: give a pool with the controlplane role at least 1 replica", at(RoleControlPlane))
	}
	if counts[RoleWorker] == 0 {
		errorAt("roles", "the cluster has no worker node: give a pool with the worker role at least 1 replica", at(RoleWorker))
	}
	// Machine names become host and node names, which are DNS labels.
	if name := MachineName(s.Name, longest, "xxxxx", max(maxReplicas, 1)); len(name) > MaxMachineNameLen {
		errorAt("name", "machine names such as %s would be %d characters long; host names allow %d: shorten the cluster name", []string{"name"}, name, len(name), MaxMachineNameLen)
	}
	return eff, !inherited && (len(f.diags) == before || !f.diags[before:].HasErrors())
}

// reportEvenEtcd reports each class whose etcd count is even once, at the
// class in fleet.yaml, naming the clusters that inherit the count; each of
// those clusters is held with that diagnostic.
func (c *fleetChecker) reportEvenEtcd() {
	f := c.f
	for _, name := range slices.Sorted(maps.Keys(c.spec.Classes)) {
		n := 0
		for _, p := range c.spec.Classes[name].Pools {
			if slices.Contains(p.Roles, RoleEtcd) {
				n += p.Replicas
			}
		}
		if n == 0 || n%2 == 1 {
			continue
		}
		files := c.evenEtcd[name]
		pos, field := f.doc.keyPos("classes", name), f.doc.fieldPath([]string{"classes", name})
		if len(files) == 0 {
			f.warnf(pos, field, "roles", "class %s has %d etcd members: etcd needs an odd number (1, 3, 5, ...) to keep quorum; a cluster of this class must override it", name, n)
			continue
		}
		names := make([]string, len(files))
		for i, cf := range files {
			names[i] = cf.spec.Name
		}
		slices.Sort(names)
		msg := fmt.Sprintf("class %s has %d etcd members: etcd needs an odd number (1, 3, 5, ...) to keep quorum; change the class's etcd replicas. Clusters that inherit it and are held: %s",
			name, n, strings.Join(names, ", "))
		f.errorf(pos, field, "roles", "%s", msg)
		for _, cf := range files {
			cf.elsewhere = append(cf.elsewhere, f.diags[len(f.diags)-1])
		}
	}
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

// checkAccess checks a cluster's access entries: exactly one of group and
// team, a known team, a known role. Expand turns them into bindings.
func (c *fleetChecker) checkAccess(f *file) {
	s := f.spec
	entries := map[[3]string]int{}
	for i, a := range s.Access {
		idx := strconv.Itoa(i)
		if a.Role != "" && !c.roles[a.Role] {
			pos, field := f.at("access", idx, "role")
			names := slices.Sorted(maps.Keys(c.roles))
			hint := ""
			if sg := suggest(a.Role, names); sg != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", sg)
			}
			f.errorf(pos, field, "role", "unknown cluster role %q%s: use a Rancher built-in role (%s) or declare a custom one in fleet.yaml's clusterRoles",
				a.Role, hint, strings.Join(BuiltinClusterRoles, ", "))
		}
		if (a.Group == "") == (a.Team == "") {
			pos, field := f.at("access", idx)
			f.errorf(pos, field, "access", "an access entry names exactly one of group (an LDAP DN) and team")
			continue
		}
		if a.Team != "" {
			ti, ok := c.teams[a.Team]
			if !ok {
				pos, field := f.at("access", idx, "team")
				f.errorf(pos, field, "reference", "unknown team %q%s; teams in fleet.yaml: %s", a.Team, suggestion(a.Team, c.teamPos), strings.Join(c.teamNames(), ", "))
				continue
			}
			if len(c.spec.Teams[ti].Groups) == 0 {
				pos, field := f.at("access", idx, "team")
				f.warnf(pos, field, "access", "team %s has no groups in fleet.yaml, so this entry grants nothing", a.Team)
			}
		}
		k := [3]string{a.Group, a.Team, a.Role}
		if first, dup := entries[k]; dup {
			pos, field := f.at("access", idx)
			f.warnf(pos, field, "access", "the same binding as access[%d]", first)
		} else {
			entries[k] = i
		}
	}
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
