package kube

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"

	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// Config configures New.
type Config struct {
	// Spec is fleet.yaml's rancher block: downstream clusters are reached
	// through Rancher with its token.
	Spec schema.Rancher
	// Logger receives drain progress (default slog.Default()).
	Logger *slog.Logger
	// CAData, when set, is trusted instead of Spec.CAFile.
	CAData []byte
	// WrapTransport, when set, wraps the HTTP transport (tests count requests).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// DrainTimeout bounds one drain (default 2 minutes); a drain that does
	// not finish is tried again at a later sync.
	DrainTimeout time.Duration
	// EvictRetry is the pause between evictions refused by a
	// PodDisruptionBudget (default 5s).
	EvictRetry time.Duration
	// PageSize bounds each list response (default 500).
	PageSize int64
}

// Nodes is reconcile.Nodes over client-go, one client per downstream cluster.
type Nodes struct {
	conn         *rancher.Conn
	log          *slog.Logger
	drainTimeout time.Duration
	evictRetry   time.Duration
	pageSize     int64

	mu      sync.Mutex
	clients map[string]kubernetes.Interface
}

var _ reconcile.Nodes = (*Nodes)(nil)

// New returns downstream node access for cfg. It makes no request.
func New(_ context.Context, cfg Config) (*Nodes, error) {
	conn, err := rancher.Connect(cfg.Spec, cfg.CAData)
	if err != nil {
		return nil, err
	}
	conn.WrapTransport = cfg.WrapTransport
	return NewWithConn(cfg, conn), nil
}

// NewWithConn is New with the connection already made.
func NewWithConn(cfg Config, conn *rancher.Conn) *Nodes {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Nodes{
		conn:         conn,
		log:          log,
		drainTimeout: cmp.Or(cfg.DrainTimeout, 2*time.Minute),
		evictRetry:   cmp.Or(cfg.EvictRetry, 5*time.Second),
		pageSize:     cmp.Or(cfg.PageSize, 500),
		clients:      map[string]kubernetes.Interface{},
	}
}

func (n *Nodes) client(cluster reconcile.ClusterRef) (kubernetes.Interface, error) {
	if cluster.ID == "" {
		return nil, &reconcile.WaitError{Reason: "cluster " + cluster.Name + " has no management ID yet", After: 5 * time.Second}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.clients[cluster.ID]; ok {
		return c, nil
	}
	c, err := kubernetes.NewForConfig(n.conn.RESTConfig(cluster.ID))
	if err != nil {
		return nil, fmt.Errorf("kube: client for %s (%s): %w", cluster.Name, cluster.ID, err)
	}
	n.clients[cluster.ID] = c
	return c, nil
}

func (n *Nodes) fail(op, object string, err error) error {
	return rancher.APIError(op, object, err, n.conn.Token())
}

// Ready returns each node's Ready condition by node name, from one paged
// list of the cluster's nodes. It changes nothing.
func (n *Nodes) Ready(ctx context.Context, cluster reconcile.ClusterRef) (map[string]bool, error) {
	c, err := n.client(cluster)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	opts := metav1.ListOptions{Limit: n.pageSize}
	for {
		l, err := c.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return nil, n.fail("list nodes of", cluster.Name, err)
		}
		for i := range l.Items {
			out[l.Items[i].Name] = nodeReady(&l.Items[i])
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Drain cordons the node and evicts its pods through the Eviction API, which
// respects PodDisruptionBudgets; DaemonSet pods are skipped and emptyDir data
// is deleted (as Rancher's own drain does). Nothing is forced: pods without a
// controller stop the drain. A node that is gone or already drained is a
// success, so Drain is idempotent. When evictions are still refused at the
// timeout it returns a *reconcile.WaitError naming the PodDisruptionBudgets
// that block them.
func (n *Nodes) Drain(ctx context.Context, cluster reconcile.ClusterRef, node string) error {
	c, err := n.client(cluster)
	if err != nil {
		return err
	}
	obj := cluster.Name + "/" + node
	nd, err := c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return n.fail("get node", obj, err)
	}
	var errOut bytes.Buffer
	h := &drain.Helper{
		Ctx:                  ctx,
		Client:               c,
		Force:                false,
		GracePeriodSeconds:   -1,
		IgnoreAllDaemonSets:  true,
		DeleteEmptyDirData:   true,
		Timeout:              n.drainTimeout,
		EvictErrorRetryDelay: n.evictRetry,
		Out:                  io.Discard,
		ErrOut:               &errOut,
	}
	if err := drain.RunCordonOrUncordon(h, nd, true); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return n.fail("cordon node", obj, err)
	}
	err = drain.RunNodeDrain(h, node)
	if err == nil {
		return nil
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Evictions refused at the timeout: name the budgets that refuse them.
	pdbs, perr := n.blockingBudgets(ctx, c, node)
	if perr != nil {
		n.log.Warn("Cannot list the disruption budgets of a node that does not drain", "cluster", cluster.Name, "node", node, "error", perr)
	}
	if len(pdbs) > 0 {
		return &reconcile.WaitError{
			Reason: fmt.Sprintf("drain of node %s is blocked by PodDisruptionBudget %s", node, strings.Join(pdbs, ", ")),
			After:  30 * time.Second,
		}
	}
	if strings.Contains(err.Error(), "global timeout") {
		return &reconcile.WaitError{Reason: fmt.Sprintf("drain of node %s did not finish within %v", node, n.drainTimeout), After: 15 * time.Second}
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return n.fail("drain node", obj, err)
	}
	// Refusals such as a pod without a controller: a change in the cluster
	// (not in the fleet repo) fixes it, so try again later.
	return fmt.Errorf("kube: drain node %s: %w", obj, err)
}

// blockingBudgets returns namespace/name of the PodDisruptionBudgets that
// select a pod still on node (DaemonSet pods aside).
func (n *Nodes) blockingBudgets(ctx context.Context, c kubernetes.Interface, node string) ([]string, error) {
	pods, err := c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, err
	}
	budgets := map[string][]policyBudget{}
	var out []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "DaemonSet" {
			continue
		}
		bs, ok := budgets[p.Namespace]
		if !ok {
			l, err := c.PolicyV1().PodDisruptionBudgets(p.Namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, err
			}
			for j := range l.Items {
				sel, err := metav1.LabelSelectorAsSelector(l.Items[j].Spec.Selector)
				if err != nil {
					continue
				}
				bs = append(bs, policyBudget{name: p.Namespace + "/" + l.Items[j].Name, sel: sel})
			}
			budgets[p.Namespace] = bs
		}
		for _, b := range bs {
			if !b.sel.Empty() && b.sel.Matches(labels.Set(p.Labels)) && !slices.Contains(out, b.name) {
				out = append(out, b.name)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

type policyBudget struct {
	name string
	sel  labels.Selector
}
