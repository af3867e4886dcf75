package reconcile

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/schema"
)

// JoinTimeout is how long a machine of a registered cluster may take to appear
// in Rancher. A machine still missing there after it is taken as failed and
// replaced; a younger one is waited for.
const JoinTimeout = 30 * time.Minute

// index holds desired and observed state paired by cluster, pool and machine
// name. Building it is the first step of planning and of status reporting.
type index struct {
	d        *Desired
	o        *Observed
	fleet    *schema.Fleet
	rancher  bool // the fleet has a rancher block
	auth     string
	now      time.Time
	pricing  map[string]schema.Pricing
	provType map[string]string
	// templates are every known template by hash: the desired ones and those
	// observed before.
	templates map[string]*Template
	protected map[string]bool
	clusters  []*pairedCluster
	// unidentified are rejected cluster files whose cluster is unknown.
	unidentified []string
	matchedBuf   []bool
}

type pairedCluster struct {
	name string
	team string
	// spec is the effective spec to converge to (a held cluster's last valid
	// one); nil when the cluster is not desired.
	spec *schema.EffectiveCluster
	// held is set when the cluster's file is rejected now.
	held       *Held
	heldNoSpec bool
	expiresAt  *time.Time
	expired    bool
	rc         *RancherCluster
	machines   []*Machine
	pools      []*pairedPool
	// orphanRMs are Rancher machines of fleetd's naming whose VM is gone.
	orphanRMs []*RancherMachine
	// foreignRMs are Rancher machines fleetd did not name; left alone.
	foreignRMs []*RancherMachine
}

type pairedPool struct {
	name     string
	spec     *schema.EffectivePool
	tmpl     *Template
	machines []*machineView
}

type machineView struct {
	m        *Machine
	rm       *RancherMachine
	tmpl     *Template // nil when unknown
	current  bool      // has its pool's desired template
	ready    bool
	removing bool // the VM or its Rancher machine is being deleted
	etcd     bool // carries the etcd role, or its roles are unknown
}

// member reports whether the machine counts as an etcd member.
func (v *machineView) member(rancher bool) bool {
	if !v.etcd || v.removing {
		return false
	}
	if rancher {
		return v.rm != nil
	}
	return v.m.State == MachineRunning
}

func (v *machineView) young(now time.Time) bool {
	return now.Sub(v.m.CreatedAt) < JoinTimeout
}

// newIndex pairs desired and observed state. It reads no clock.
func newIndex(d *Desired, o *Observed, now time.Time) *index {
	ix := &index{d: d, o: o, fleet: d.Fleet, now: now, templates: map[string]*Template{}, protected: map[string]bool{}}
	for name, r := range d.Removed {
		if r.Protected {
			ix.protected[name] = true
		}
	}
	for _, h := range slices.Sorted(maps.Keys(o.Templates)) {
		t := o.Templates[h]
		ix.templates[h] = &t
	}
	if f := d.Fleet; f != nil {
		ix.rancher = f.Spec.Rancher != nil
		if ix.rancher {
			ix.auth = f.Spec.Rancher.AuthProvider
		}
		ix.pricing = f.Spec.Pricing
		ix.provType = make(map[string]string, len(f.Spec.Providers))
		for _, p := range f.Spec.Providers {
			ix.provType[p.Name] = p.Type
		}
	} else {
		ix.rancher = len(o.Rancher) > 0
	}

	// Paired clusters come from one slab: a fleet has thousands.
	slab := make([]pairedCluster, 0, len(o.Rancher)+len(d.Held)+fleetSize(d.Fleet))
	alloc := func(pc pairedCluster) *pairedCluster {
		if len(slab) == cap(slab) {
			return &pc
		}
		slab = append(slab, pc)
		return &slab[len(slab)-1]
	}
	desired := make(map[string]*pairedCluster, cap(slab))
	names := make([]string, 0, cap(slab))
	add := func(pc *pairedCluster) {
		if _, dup := desired[pc.name]; dup {
			return
		}
		desired[pc.name] = pc
		names = append(names, pc.name)
	}
	if f := d.Fleet; f != nil {
		for _, c := range f.Clusters {
			add(alloc(pairedCluster{name: c.Effective.Name, team: c.Effective.Team, spec: &c.Effective}))
		}
		heldPaths := map[string]bool{}
		for i := range d.Held {
			h := &d.Held[i]
			heldPaths[h.Path] = true
			if h.Last == nil {
				continue
			}
			add(alloc(pairedCluster{name: h.Last.Effective.Name, team: h.Last.Effective.Team, spec: &h.Last.Effective, held: h}))
		}
		for _, r := range f.Rejected {
			switch {
			case r.Name != "":
				if _, ok := desired[r.Name]; !ok {
					h := &Held{Path: r.Path, Diagnostics: r.Diagnostics}
					add(alloc(pairedCluster{name: r.Name, team: r.Team, held: h, heldNoSpec: true}))
				} else if pc := desired[r.Name]; pc.held == nil && pc.spec != nil {
					// A second file declaring a loaded cluster's name: the
					// loaded one wins.
					continue
				}
			case !heldPaths[r.Path]:
				ix.unidentified = append(ix.unidentified, r.Path)
			}
		}
	}

	// Machines by cluster, carved out of one slice.
	perCluster := make(map[string]int, len(o.Rancher)+fleetSize(d.Fleet))
	for i := range o.Machines {
		perCluster[o.Machines[i].Cluster]++
	}
	all := make([]*Machine, len(o.Machines))
	byCluster := make(map[string][]*Machine, len(perCluster))
	off := 0
	for i := range o.Machines {
		c := o.Machines[i].Cluster
		ms, ok := byCluster[c]
		if !ok {
			n := perCluster[c]
			ms = all[off : off : off+n]
			off += n
		}
		byCluster[c] = append(ms, &o.Machines[i])
	}
	rcs := make(map[string]*RancherCluster, len(o.Rancher))
	for i := range o.Rancher {
		rcs[o.Rancher[i].Name] = &o.Rancher[i]
	}
	for name := range byCluster {
		if _, ok := desired[name]; !ok {
			names = append(names, name)
			desired[name] = alloc(pairedCluster{name: name})
		}
	}
	for name := range rcs {
		if _, ok := desired[name]; !ok {
			names = append(names, name)
			desired[name] = alloc(pairedCluster{name: name})
		}
	}
	slices.Sort(names)

	// Desired templates first, so a pool's template is shared by its machines.
	ix.clusters = make([]*pairedCluster, 0, len(names))
	for _, name := range names {
		pc := desired[name]
		pc.rc = rcs[name]
		pc.machines = byCluster[name]
		ix.pairCluster(pc)
		ix.clusters = append(ix.clusters, pc)
	}
	return ix
}

// ttlBase is when a temporary cluster's ttl starts: the commit that created
// its file, but never before the launch of the cluster's earliest machine.
// A commit's date is whatever its committer's clock or a force-push says;
// a launch time is the provider's, so a backdated history cannot expire a
// cluster whose machines have not lived for the ttl. Later dates only
// postpone an expiry.
func ttlBase(created time.Time, machines []*Machine) time.Time {
	var first time.Time
	for _, m := range machines {
		if !m.CreatedAt.IsZero() && (first.IsZero() || m.CreatedAt.Before(first)) {
			first = m.CreatedAt
		}
	}
	if first.After(created) {
		return first
	}
	return created
}

func (ix *index) pairCluster(pc *pairedCluster) {
	slices.SortFunc(pc.machines, func(a, b *Machine) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	if pc.team == "" {
		for _, m := range pc.machines {
			if m.Team != "" {
				pc.team = m.Team
				break
			}
		}
	}
	if pc.team == "" && pc.rc != nil {
		pc.team = pc.rc.Team
	}
	if pc.team == "" {
		pc.team = "unknown"
	}
	if s := pc.spec; s != nil && s.TTL > 0 {
		if created, ok := ix.d.CreatedAt[pc.name]; ok {
			exp := ttlBase(created, pc.machines).Add(s.TTL).UTC()
			pc.expiresAt = &exp
			pc.expired = !exp.After(ix.now)
		}
	}

	// Pools: the desired ones in spec order, then observed ones no longer
	// desired, by name. Clusters are small: pools and Rancher machines are
	// found by a linear scan, which costs less than a map per cluster.
	if s := pc.spec; s != nil {
		slab := make([]pairedPool, len(s.Pools))
		pc.pools = make([]*pairedPool, 0, len(s.Pools))
		for i := range s.Pools {
			p := &s.Pools[i]
			slab[i] = pairedPool{name: p.Name, spec: p, tmpl: ix.template(s, p)}
			pc.pools = append(pc.pools, &slab[i])
		}
	}
	ndesired := len(pc.pools)
	var rms []RancherMachine
	if pc.rc != nil {
		rms = pc.rc.Machines
	}
	matched := ix.matchedBuf[:0]
	for range rms {
		matched = append(matched, false)
	}
	ix.matchedBuf = matched
	var byNode map[string]int
	if len(rms) > 32 {
		byNode = make(map[string]int, len(rms))
		for i := range rms {
			if rms[i].Node != "" {
				byNode[rms[i].Node] = i
			}
		}
	}
	views := make([]machineView, len(pc.machines))
	// Each machine's pool, then every pool's share of one slice of views.
	poolOf := make([]*pairedPool, len(pc.machines))
	counts := map[*pairedPool]int{}
	for k, m := range pc.machines {
		var pp *pairedPool
		for _, q := range pc.pools {
			if q.name == m.Pool {
				pp = q
				break
			}
		}
		if pp == nil {
			pp = &pairedPool{name: m.Pool}
			pc.pools = append(pc.pools, pp)
		}
		poolOf[k] = pp
		counts[pp]++
	}
	shares := make([]*machineView, len(pc.machines))
	off := 0
	for _, pp := range pc.pools {
		n := counts[pp]
		pp.machines = shares[off : off : off+n]
		off += n
	}
	for k, m := range pc.machines {
		pp := poolOf[k]
		v := &views[k]
		*v = machineView{m: m, tmpl: ix.templates[m.TemplateHash]}
		i, ok := byNode[m.Name]
		if !ok {
			i = findRancherMachine(rms, m.Name, byNode == nil)
		}
		if i >= 0 {
			v.rm = &rms[i]
			matched[i] = true
		}
		v.current = pp.tmpl != nil && m.TemplateHash == pp.tmpl.Hash
		switch {
		case v.tmpl != nil:
			v.etcd = v.tmpl.HasRole(schema.RoleEtcd)
		default:
			// Unknown roles: treat it as an etcd member, the cautious choice.
			v.etcd = true
		}
		v.removing = m.State == MachineDeleting || (v.rm != nil && v.rm.Phase == RancherMachineDeleting)
		v.ready = m.State == MachineRunning && !v.removing
		if ix.rancher && v.ready {
			v.ready = v.rm != nil && pc.rc.Nodes[m.Name]
		}
		pp.machines = append(pp.machines, v)
	}
	if extra := pc.pools[ndesired:]; len(extra) > 1 {
		slices.SortFunc(extra, func(a, b *pairedPool) int { return strings.Compare(a.name, b.name) })
	}
	for i := range rms {
		rm := &rms[i]
		if matched[i] {
			continue
		}
		if rm.Node != "" && looksLikeMachineName(pc.name, rm.Node) {
			pc.orphanRMs = append(pc.orphanRMs, rm)
		} else {
			pc.foreignRMs = append(pc.foreignRMs, rm)
		}
	}
}

// template returns the shared template of a desired pool.
func (ix *index) template(c *schema.EffectiveCluster, p *schema.EffectivePool) *Template {
	t := NewTemplate(c, p)
	if tp := ix.templates[t.Hash]; tp != nil {
		return tp
	}
	tp := new(Template)
	*tp = t
	ix.templates[t.Hash] = tp
	return tp
}

// findRancherMachine returns the index of machine's Rancher machine: the one
// whose node is machine, else (its node not recorded yet) the one with the
// name Rancher derives from it; -1 when there is none.
func findRancherMachine(rms []RancherMachine, machine string, byNode bool) int {
	unnamed := false
	for i := range rms {
		if byNode && rms[i].Node == machine {
			return i
		}
		if rms[i].Node == "" {
			unnamed = true
		}
	}
	if unnamed {
		name := RancherMachineName(machine)
		for i := range rms {
			if rms[i].Node == "" && rms[i].Name == name {
				return i
			}
		}
	}
	return -1
}

func fleetSize(f *schema.Fleet) int {
	if f == nil {
		return 0
	}
	return len(f.Clusters) + len(f.Rejected)
}

// observed reports whether anything of the cluster exists.
func (pc *pairedCluster) observed() bool { return len(pc.machines) > 0 || pc.rc != nil }

// provider returns the cluster's provider: the desired one, else that of its
// first machine.
func (pc *pairedCluster) provider() string {
	if pc.spec != nil {
		return pc.spec.Provider
	}
	if len(pc.machines) > 0 {
		return pc.machines[0].Provider
	}
	return ""
}
