package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Concurrency is how many clusters are worked on at once (default 8).
	Concurrency int
	// Requeue is how soon to sync again while something is in progress
	// (DefaultRequeue when zero).
	Requeue time.Duration
}

// DefaultRequeue is how soon a sync runs again while something is in
// progress (machines booting, nodes joining or draining).
const DefaultRequeue = 15 * time.Second

func (o ApplyOptions) withDefaults() ApplyOptions {
	o.Concurrency = cmp.Or(o.Concurrency, 8)
	o.Requeue = cmp.Or(o.Requeue, DefaultRequeue)
	return o
}

// ClusterResult is what Apply did to one cluster.
type ClusterResult struct {
	Cluster string
	// Done counts the actions that completed.
	Done int
	// Err joins the cluster's failures; nil when every action completed.
	Err error
	// Reaction is Classify(Err).
	Reaction Reaction
	// Effects is what the completed actions changed, for Fold.
	Effects Effects
}

// Effects records what a cluster's completed actions changed in the world,
// as the calls answered: the status written after a sync shows the world as
// the sync left it, not as it found it.
type Effects struct {
	Created      []Machine       `json:"created,omitempty"`
	DeletedIDs   []string        `json:"deletedIDs,omitempty"`
	Registered   *RancherCluster `json:"registered,omitempty"`
	Unregistered bool            `json:"unregistered,omitempty"`
	Bound        []Binding       `json:"bound,omitempty"`
	Unbound      []Binding       `json:"unbound,omitempty"`
	// RancherMachinesDeleted are the names of deleted Rancher machines.
	RancherMachinesDeleted []string `json:"rancherMachinesDeleted,omitempty"`
}

// ApplyResult is what Apply did.
type ApplyResult struct {
	// Clusters holds a result per cluster that had runnable actions, sorted by name.
	Clusters []ClusterResult
	// Requeue asks for the next sync after this long; 0 leaves it to the
	// poll interval.
	Requeue time.Duration
}

// Err joins every cluster's failure, each prefixed with its cluster.
func (r *ApplyResult) Err() error {
	var errs []error
	for _, c := range r.Clusters {
		if c.Err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", c.Cluster, c.Err))
		}
	}
	return errors.Join(errs...)
}

// Cluster returns the result of the named cluster, or nil.
func (r *ApplyResult) Cluster(name string) *ClusterResult {
	if r == nil {
		return nil
	}
	for i := range r.Clusters {
		if r.Clusters[i].Cluster == name {
			return &r.Clusters[i]
		}
	}
	return nil
}

// Apply runs the plan's runnable actions: clusters in parallel (at most
// opts.Concurrency at once), the actions of one cluster in order, stopping a
// cluster at its first failure. One cluster's failure never stops another.
// Every action is idempotent, so a crash between any two calls followed by a
// new sync ends in the same world. Apply never waits for a machine to boot or
// a node to join: it asks for a sync again soon instead (Requeue).
func Apply(ctx context.Context, p Plan, w World, opts ApplyOptions) ApplyResult {
	opts = opts.withDefaults()
	var todo []int
	for i := range p.Clusters {
		for _, a := range p.Clusters[i].Actions {
			if a.Runnable() {
				todo = append(todo, i)
				break
			}
		}
	}
	res := ApplyResult{Clusters: make([]ClusterResult, len(todo))}
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	for n, i := range todo {
		cp := &p.Clusters[i]
		res.Clusters[n].Cluster = cp.Name
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			res.Clusters[n].Err = ctx.Err()
			res.Clusters[n].Reaction = ReactRetry
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r := &res.Clusters[n]
			// The one logger path: the context's (WithLogger).
			log := LoggerFrom(ctx).With("cluster", cp.Name, "revision", p.Revision)
			ap := applier{w: w, opts: opts, cp: cp, fx: &r.Effects}
			r.Done, r.Err = ap.run(ctx, log)
			r.Reaction = Classify(r.Err)
		})
	}
	wg.Wait()

	if p.InProgress() {
		res.Requeue = opts.Requeue
	}
	for _, c := range res.Clusters {
		var after time.Duration
		switch c.Reaction {
		case ReactRequeue:
			var we *WaitError
			after = opts.Requeue
			if errors.As(c.Err, &we) && we.After > 0 {
				after = we.After
			}
		}
		if after > 0 && (res.Requeue == 0 || after < res.Requeue) {
			res.Requeue = after
		}
	}
	return res
}

type applier struct {
	w    World
	opts ApplyOptions
	cp   *ClusterPlan
	fx   *Effects
}

func (ap *applier) run(ctx context.Context, log *slog.Logger) (int, error) {
	done := 0
	for i := range ap.cp.Actions {
		a := &ap.cp.Actions[i]
		if !a.Runnable() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return done, err
		}
		alog := log.With("provider", cmp.Or(a.Provider, ap.cp.Provider))
		// No retry here: the SDKs and transports retry their own calls,
		// and a cluster that still fails backs off across syncs (the
		// loop's per-cluster backoff), so calls are never multiplied.
		err := ap.do(WithLogger(ctx, alog), alog, a)
		if err != nil {
			var we *WaitError
			if errors.As(err, &we) {
				alog.Info("Waiting", "action", a.Kind.String(), "reason", we.Reason)
			} else {
				alog.Error("Action failed", "action", a.Kind.String(), "error", err)
			}
			// Later actions may depend on this one (drain before delete,
			// register before create): stop here, the next sync resumes.
			return done, err
		}
		done++
	}
	return done, nil
}

func (ap *applier) do(ctx context.Context, log *slog.Logger, a *Action) error {
	w, cluster := ap.w, ap.cp.Name
	needRegistry := func() error {
		if w.Registry == nil {
			return Stalled(fmt.Errorf("%s: no Rancher registry is configured", a.Kind))
		}
		return nil
	}
	switch a.Kind {
	case ActionRegister:
		if err := needRegistry(); err != nil {
			return err
		}
		log.Info("Registering cluster", "reason", a.Reason, "kubernetesVersion", a.Register.KubernetesVersion)
		rc, err := w.Registry.Register(ctx, *a.Register)
		if err != nil {
			return fmt.Errorf("register cluster %s: %w", cluster, err)
		}
		ap.fx.Registered = &rc
	case ActionBind, ActionUnbind:
		if err := needRegistry(); err != nil {
			return err
		}
		if a.Kind == ActionBind {
			log.Info("Binding access", "principal", a.Binding.PrincipalID, "role", a.Binding.Role)
			if err := w.Registry.Bind(ctx, cluster, *a.Binding); err != nil {
				return fmt.Errorf("bind %s to %s on %s: %w", a.Binding.PrincipalID, a.Binding.Role, cluster, err)
			}
			ap.fx.Bound = append(ap.fx.Bound, *a.Binding)
			return nil
		}
		log.Info("Unbinding access", "principal", a.Binding.PrincipalID, "role", a.Binding.Role, "reason", a.Reason)
		if err := w.Registry.Unbind(ctx, cluster, *a.Binding); err != nil {
			return fmt.Errorf("unbind %s from %s on %s: %w", a.Binding.PrincipalID, a.Binding.Role, cluster, err)
		}
		ap.fx.Unbound = append(ap.fx.Unbound, *a.Binding)
	case ActionCreateMachines, ActionReplaceMachine:
		return ap.create(ctx, log, a)
	case ActionDrainMachine:
		if w.Nodes == nil {
			return nil
		}
		node := first(a.Machines)
		log.Info("Draining machine", "machine", node, "reason", a.Reason)
		if err := w.Nodes.Drain(ctx, ClusterRef{Name: cluster, ID: a.ClusterID}, node); err != nil {
			return fmt.Errorf("drain %s in %s: %w", node, cluster, err)
		}
	case ActionDeleteRancherMachine:
		if err := needRegistry(); err != nil {
			return err
		}
		log.Info("Deleting Rancher machine", "machine", first(a.Machines), "rancherMachine", a.RancherMachine, "excludeDrain", a.ExcludeDrain, "reason", a.Reason)
		if err := w.Registry.DeleteMachine(ctx, cluster, a.RancherMachine, a.ExcludeDrain); err != nil {
			return fmt.Errorf("delete rancher machine %s of %s: %w", a.RancherMachine, cluster, err)
		}
		ap.fx.RancherMachinesDeleted = append(ap.fx.RancherMachinesDeleted, a.RancherMachine)
	case ActionDeleteMachines:
		prov := w.Providers[a.Provider]
		if prov == nil {
			return Stalled(fmt.Errorf("delete machines of %s: no provider %s", cluster, a.Provider))
		}
		log.Info("Deleting machines", "machines", a.Machines, "reason", a.Reason)
		if err := prov.Delete(ctx, a.IDs); err != nil {
			return fmt.Errorf("%s: delete %s of %s: %w", a.Provider, strings.Join(a.Machines, ", "), cluster, err)
		}
		ap.fx.DeletedIDs = append(ap.fx.DeletedIDs, a.IDs...)
	case ActionUnregister:
		if err := needRegistry(); err != nil {
			return err
		}
		log.Info("Unregistering cluster", "reason", a.Reason)
		if err := w.Registry.Unregister(ctx, cluster); err != nil {
			return fmt.Errorf("unregister cluster %s: %w", cluster, err)
		}
		ap.fx.Unregistered = true
	default:
		return Stalled(fmt.Errorf("unknown action %v", a.Kind))
	}
	return nil
}

func (ap *applier) create(ctx context.Context, log *slog.Logger, a *Action) error {
	w, cp := ap.w, ap.cp
	prov := w.Providers[a.Provider]
	if prov == nil {
		return Stalled(fmt.Errorf("create machines of %s: no provider %s", cp.Name, a.Provider))
	}
	var join string
	if w.Registry != nil {
		var err error
		join, err = w.Registry.JoinCommand(ctx, cp.Name, a.Template.Roles)
		if err != nil {
			// The command is a secret: the registry's error must not hold it,
			// and nothing of it is added here.
			return fmt.Errorf("node command for %s: %w", cp.Name, err)
		}
	}
	specs := make([]MachineSpec, len(a.Machines))
	for i, name := range a.Machines {
		specs[i] = MachineSpec{
			Name: name, Cluster: cp.Name, Team: cp.Team, Pool: a.Pool,
			TemplateHash: a.Template.Hash, Size: a.Template.Size,
			UserData: CloudInit(name, join),
		}
	}
	if a.Kind == ActionReplaceMachine {
		log.Info("Replacing machine", "machine", a.Replaces, "with", a.Machines, "pool", a.Pool, "reason", a.Reason)
	} else {
		log.Info("Creating machines", "machines", a.Machines, "pool", a.Pool, "reason", a.Reason)
	}
	created, err := prov.Create(ctx, specs)
	// On a partial failure the machines that were made are returned too.
	ap.fx.Created = append(ap.fx.Created, created...)
	if err != nil {
		return fmt.Errorf("%s: create %s: %w", a.Provider, strings.Join(a.Machines, ", "), err)
	}
	return nil
}

// CloudInit returns the user data a machine boots with: it sets the host name
// and, for a registered cluster, runs the node command join with CATTLE_ID and
// --node-name set to the machine name, so its Rancher machine and node have
// names known in advance. The result holds the registration token: it goes to
// the provider and nowhere else.
func CloudInit(name, join string) []byte {
	var b strings.Builder
	b.WriteString("#cloud-config\nhostname: ")
	b.WriteString(name)
	b.WriteString("\n")
	if join != "" {
		b.WriteString("runcmd:\n  - |\n    export CATTLE_ID='")
		b.WriteString(name)
		b.WriteString("'\n    ")
		b.WriteString(strings.ReplaceAll(strings.TrimSpace(join), "\n", "\n    "))
		b.WriteString(" --node-name '")
		b.WriteString(name)
		b.WriteString("'\n")
	}
	return []byte(b.String())
}

type loggerKey struct{}

// WithLogger returns a context that carries log; the reconciler attaches the
// cluster, provider and revision to it before acting, so providers log with
// them.
func WithLogger(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// ContextLogger returns the logger WithLogger attached to ctx, if any:
// providers log through it, so their lines carry the cluster, provider and
// revision the reconciler is working on.
func ContextLogger(ctx context.Context) (*slog.Logger, bool) {
	l, ok := ctx.Value(loggerKey{}).(*slog.Logger)
	return l, ok && l != nil
}

// LoggerFrom returns the context's logger, or slog.Default().
func LoggerFrom(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.Default()
}
