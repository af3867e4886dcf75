package kube

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetd/fleetd/internal/kubeapi"
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
	// DrainWait is the longest one Drain call waits for evicted pods to be
	// gone (default 3s). A drain is a step, not a wait: a node whose pods
	// take longer is checked again at a later sync.
	DrainWait time.Duration
	// PageSize bounds each list response (default 500).
	PageSize int64
}

// Nodes is reconcile.Nodes over client-go, one client per downstream cluster.
type Nodes struct {
	conn      *rancher.Conn
	log       *slog.Logger
	drainWait time.Duration
	pageSize  int64

	mu      sync.Mutex
	clients map[string]*kubeapi.Client
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
		conn:      conn,
		log:       log,
		drainWait: cmp.Or(cfg.DrainWait, 3*time.Second),
		pageSize:  cmp.Or(cfg.PageSize, 500),
		clients:   map[string]*kubeapi.Client{},
	}
}

// client returns the downstream cluster's client: kubeapi's, not client-go's
// clientset or typed clients, which link every API group into the binary.
func (n *Nodes) client(cluster reconcile.ClusterRef) (*kubeapi.Client, error) {
	if cluster.ID == "" {
		return nil, &reconcile.WaitError{Reason: "cluster " + cluster.Name + " has no management ID yet", After: 5 * time.Second}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.clients[cluster.ID]; ok {
		return c, nil
	}
	cfg := n.conn.RESTConfig(cluster.ID)
	c, err := kubeapi.New(cfg)
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
		l, err := c.Nodes().List(ctx, opts)
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
