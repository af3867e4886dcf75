package schema

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Expand returns the effective spec of a cluster: its class from fleet with
// the cluster's overrides applied, sizes resolved for its provider, access
// expanded into group bindings (the owning team gets DefaultOwnerRole unless
// an entry binds it) and its ttl parsed. It is the one place a cluster file
// becomes what the reconciler converges to; the loader calls it after its
// checks, and references that do not resolve leave fields empty.
func Expand(fleet *FleetSpec, spec *ClusterSpec) EffectiveCluster {
	eff := EffectiveCluster{
		Name: spec.Name, Team: spec.Team, Provider: spec.Provider, Class: spec.Class,
		TTLText: spec.TTL, Protected: spec.Protected, Paused: spec.Paused, Labels: spec.Labels,
		Access: expandAccess(fleet, spec),
	}
	if spec.TTL != "" {
		eff.TTL, _ = ParseTTL(spec.TTL)
	}
	var prov Provider
	provOK := false
	for _, p := range fleet.Providers {
		if p.Name == spec.Provider {
			prov, provOK = p, true
			break
		}
	}
	eff.ProviderType = prov.Type
	class, ok := fleet.Classes[spec.Class]
	if !ok {
		eff.KubernetesVersion = spec.KubernetesVersion
		return eff
	}
	eff.KubernetesVersion = class.KubernetesVersion
	if spec.KubernetesVersion != "" {
		eff.KubernetesVersion = spec.KubernetesVersion
	}
	for _, p := range class.Pools {
		ep := EffectivePool{Name: p.Name, Roles: slices.Clone(p.Roles), Replicas: p.Replicas, SizeName: p.Size}
		// The first override of a pool wins; a second is an error the
		// loader reports.
		if i := slices.IndexFunc(spec.Pools, func(o PoolOverride) bool { return o.Name == p.Name }); i >= 0 {
			if o := spec.Pools[i]; o.Replicas != nil {
				ep.Replicas = *o.Replicas
			}
			if o := spec.Pools[i]; o.Size != "" {
				ep.SizeName = o.Size
			}
		}
		if size, ok := fleet.Sizes[ep.SizeName]; ok && provOK {
			ep.Machine, _ = resolveSize(prov, ep.SizeName, size)
		}
		eff.Pools = append(eff.Pools, ep)
	}
	return eff
}

// expandAccess turns a cluster's access entries into group bindings, sorted
// by group and role, without duplicates.
func expandAccess(fleet *FleetSpec, spec *ClusterSpec) []EffectiveAccess {
	var out []EffectiveAccess
	seen := map[[2]string]bool{}
	add := func(a EffectiveAccess) {
		k := [2]string{a.Group, a.Role}
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	groups := func(team string) []string {
		for _, t := range fleet.Teams {
			if t.Name == team {
				return t.Groups
			}
		}
		return nil
	}
	ownerBound := false
	for _, a := range spec.Access {
		switch {
		case a.Group != "" && a.Team != "":
			// Invalid; the loader reports it.
		case a.Team != "":
			ownerBound = ownerBound || a.Team == spec.Team
			for _, g := range groups(a.Team) {
				add(EffectiveAccess{Group: g, Role: a.Role, Team: a.Team})
			}
		case a.Group != "":
			add(EffectiveAccess{Group: a.Group, Role: a.Role})
		}
	}
	if !ownerBound {
		for _, g := range groups(spec.Team) {
			add(EffectiveAccess{Group: g, Role: DefaultOwnerRole, Team: spec.Team})
		}
	}
	slices.SortFunc(out, func(a, b EffectiveAccess) int {
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return strings.Compare(a.Role, b.Role)
	})
	return out
}

// ParseTTL reads a ttl such as 90m, 48h or 7d. ok is false when the text is
// not of that form or exceeds MaxTTLDays; the result never overflows.
func ParseTTL(s string) (d time.Duration, ok bool) {
	if len(s) < 2 {
		return 0, false
	}
	digits := s[:len(s)-1]
	if digits[0] < '1' || digits[0] > '9' || !allIn(digits, isDigit) || len(digits) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'm':
		unit = time.Minute
	case 'h':
		unit = time.Hour
	case 'd':
		unit = 24 * time.Hour
	default:
		return 0, false
	}
	// n has at most 9 digits, so n*unit stays below 2^63 ns for every unit
	// only up to the limit checked here; compare in the unit first.
	if n > int64(MaxTTLDays*24*time.Hour/unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}
