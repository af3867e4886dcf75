package kubeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
)

// scheme knows only the groups this package serves, and the meta/v1 options
// every request encodes as query parameters.
var (
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(policyv1.AddToScheme(scheme))
	utilruntime.Must(coordinationv1.AddToScheme(scheme))
}

// Client reaches the resources of one API server. It is safe for concurrent
// use; its three REST clients share one HTTP client, so one connection pool.
type Client struct {
	core, policy, coordination *rest.RESTClient
}

// New returns a Client for cfg. It makes no request.
func New(cfg *rest.Config) (*Client, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeapi: http client: %w", err)
	}
	return NewForClient(cfg, httpClient)
}

// NewForClient is New with the HTTP client already made.
func NewForClient(cfg *rest.Config, httpClient *http.Client) (*Client, error) {
	var c Client
	for _, g := range []struct {
		to      **rest.RESTClient
		gv      schema.GroupVersion
		apiPath string
	}{
		{&c.core, corev1.SchemeGroupVersion, "/api"},
		{&c.policy, policyv1.SchemeGroupVersion, "/apis"},
		{&c.coordination, coordinationv1.SchemeGroupVersion, "/apis"},
	} {
		rc := rest.CopyConfig(cfg)
		gv := g.gv
		rc.GroupVersion = &gv
		rc.APIPath = g.apiPath
		rc.NegotiatedSerializer = codecs.WithoutConversion()
		if rc.UserAgent == "" {
			rc.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		client, err := rest.RESTClientForConfigAndClient(rc, httpClient)
		if err != nil {
			return nil, fmt.Errorf("kubeapi: client for %s: %w", gv, err)
		}
		*g.to = client
	}
	return &c, nil
}

// Resource is one resource type: T its object type, L its list type. A zero
// namespace names a cluster-scoped resource, or all namespaces in List.
type Resource[T, L runtime.Object] struct {
	client    *rest.RESTClient
	resource  string
	namespace string
	newObject func() T
	newList   func() L
}

// Nodes are the cluster's nodes.
func (c *Client) Nodes() Resource[*corev1.Node, *corev1.NodeList] {
	return Resource[*corev1.Node, *corev1.NodeList]{c.core, "nodes", "", newOf[corev1.Node], newOf[corev1.NodeList]}
}

// Pods are the pods of namespace (all namespaces when it is empty).
func (c *Client) Pods(namespace string) Resource[*corev1.Pod, *corev1.PodList] {
	return Resource[*corev1.Pod, *corev1.PodList]{c.core, "pods", namespace, newOf[corev1.Pod], newOf[corev1.PodList]}
}

// Secrets are the secrets of namespace.
func (c *Client) Secrets(namespace string) Resource[*corev1.Secret, *corev1.SecretList] {
	return Resource[*corev1.Secret, *corev1.SecretList]{c.core, "secrets", namespace, newOf[corev1.Secret], newOf[corev1.SecretList]}
}

// PodDisruptionBudgets are the budgets of namespace.
func (c *Client) PodDisruptionBudgets(namespace string) Resource[*policyv1.PodDisruptionBudget, *policyv1.PodDisruptionBudgetList] {
	return Resource[*policyv1.PodDisruptionBudget, *policyv1.PodDisruptionBudgetList]{c.policy, "poddisruptionbudgets", namespace, newOf[policyv1.PodDisruptionBudget], newOf[policyv1.PodDisruptionBudgetList]}
}

// Leases are the coordination.k8s.io leases of namespace.
func (c *Client) Leases(namespace string) Resource[*coordinationv1.Lease, *coordinationv1.LeaseList] {
	return Resource[*coordinationv1.Lease, *coordinationv1.LeaseList]{c.coordination, "leases", namespace, newOf[coordinationv1.Lease], newOf[coordinationv1.LeaseList]}
}

// Evict asks the Eviction API to evict the pod ev names: the API server
// refuses with 429 TooManyRequests while a PodDisruptionBudget allows no
// disruption.
func (c *Client) Evict(ctx context.Context, ev *policyv1.Eviction) error {
	// The eviction is a subresource of the core pod; its body is policy/v1.
	return c.core.Post().UseProtobufAsDefault().
		Namespace(ev.Namespace).Resource("pods").Name(ev.Name).SubResource("eviction").
		Body(ev).Do(ctx).Error()
}

// Get returns the object named name.
func (r Resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	out := r.newObject()
	err := r.client.Get().UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").Resource(r.resource).Name(name).
		VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

// List returns one page of the objects that opts selects.
func (r Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	out := r.newList()
	err := r.client.Get().UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").Resource(r.resource).
		VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

// Create creates obj and returns what the server stored.
func (r Resource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	out := r.newObject()
	err := r.client.Post().UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").Resource(r.resource).
		VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Update replaces the object named name with obj; the server refuses with
// 409 Conflict when obj's resourceVersion is not the stored one.
func (r Resource[T, L]) Update(ctx context.Context, name string, obj T, opts metav1.UpdateOptions) (T, error) {
	out := r.newObject()
	err := r.client.Put().UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").Resource(r.resource).Name(name).
		VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Patch applies a patch of type pt to the object named name.
func (r Resource[T, L]) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions) (T, error) {
	out := r.newObject()
	err := r.client.Patch(pt).UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").Resource(r.resource).Name(name).
		VersionedParams(&opts, parameterCodec).Body(data).Do(ctx).Into(out)
	return out, err
}

func newOf[T any]() *T { return new(T) }

// ServerResources returns the resources the server serves in groupVersion
// ("group/version"), as discovery does; a group version it does not serve is
// a NotFound error (apierrors.IsNotFound).
func (c *Client) ServerResources(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error) {
	path := "/apis/" + groupVersion
	if groupVersion == "v1" {
		path = "/api/v1"
	}
	body, err := c.core.Get().AbsPath(path).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var out metav1.APIResourceList
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("kubeapi: discovery of %s: %w", groupVersion, err)
	}
	return &out, nil
}
