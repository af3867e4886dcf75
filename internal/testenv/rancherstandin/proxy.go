package rancherstandin

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetd/fleetd/internal/testenv/kubetest"
)

// ClusterLabel marks a downstream Node with its management cluster ID.
const ClusterLabel = "standin.fleetd.io/cluster"

// Proxy serves Rancher's /k8s/clusters/<id> path layout over TLS on
// 127.0.0.1 in front of the apiserver. It accepts only the API token it was
// given, and counts the requests it forwards.
type Proxy struct {
	// URL is the Rancher URL, https://127.0.0.1:<port>.
	URL string
	// CAPEM is the CA that signed the proxy's certificate.
	CAPEM []byte
	// CAChecksum is the sha256 of CAPEM, as Rancher's --ca-checksum.
	CAChecksum string

	token  string
	env    *kubetest.Env
	srv    *http.Server
	ln     net.Listener
	target *url.URL

	mu     sync.Mutex
	counts map[string]int
	state  func(id string) Availability
}

// Availability is what Rancher knows of a downstream cluster's API.
type Availability int

const (
	// ClusterNotFound: no management cluster of that ID (404).
	ClusterNotFound Availability = iota
	// ClusterNotProvisioned: no machine has registered yet (503).
	ClusterNotProvisioned
	// ClusterDisconnected: provisioned, its agent is not connected (503).
	ClusterDisconnected
	// ClusterConnected: its API is served.
	ClusterConnected
)

// StartProxy starts the proxy with token as the Rancher API token. state
// says whether a downstream cluster ID exists and can be reached (nil: none
// can).
func StartProxy(env *kubetest.Env, token string, state func(id string) Availability) (*Proxy, error) {
	target, err := url.Parse(env.URL)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := env.CA.TLSConfig("rancher-standin")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(env.CA.PEM)
	p := &Proxy{
		URL: "https://" + ln.Addr().String(), CAPEM: env.CA.PEM, CAChecksum: hex.EncodeToString(sum[:]),
		token: token, env: env, ln: ln, target: target, counts: map[string]int{}, state: state,
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(p.target) },
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.CA.Pool(), MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 64},
		FlushInterval: -1,
	}
	p.srv = &http.Server{Handler: p.handler(rp), TLSConfig: tlsCfg}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() { _ = p.srv.Close() }

func (p *Proxy) handler(rp *httputil.ReverseProxy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(p.token)) != 1 {
			status(w, http.StatusUnauthorized, "Unauthorized", "must authenticate")
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/k8s/clusters/")
		if !ok {
			status(w, http.StatusNotFound, "NotFound", "not found")
			return
		}
		id, path, _ := strings.Cut(rest, "/")
		if id != "local" {
			st := ClusterNotFound
			if p.state != nil {
				st = p.state(id)
			}
			// Rancher v2.15.0 serves a downstream API only while the
			// cluster's agent is connected, which it first is once a machine
			// registered; both refusals are reason ClusterUnavailable.
			switch st {
			case ClusterNotFound:
				status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("cluster %q not found", id))
				return
			case ClusterNotProvisioned:
				status(w, http.StatusServiceUnavailable, "ClusterUnavailable", "cluster not provisioned")
				return
			case ClusterDisconnected:
				status(w, http.StatusServiceUnavailable, "ClusterUnavailable", "cluster agent disconnected")
				return
			}
		}
		r.URL.Path = "/" + path
		r.URL.RawPath = ""
		q := r.URL.Query()
		if id != "local" && r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes" {
			// One apiserver holds every downstream cluster: show this
			// cluster's nodes only, as its own apiserver would.
			sel := ClusterLabel + "=" + id
			if s := q.Get("labelSelector"); s != "" {
				sel = s + "," + sel
			}
			q.Set("labelSelector", sel)
			r.URL.RawQuery = q.Encode()
		}
		p.count(r.Method, id, r.URL.Path, q)
		r.Header.Set("Authorization", "Bearer "+p.env.Token)
		rp.ServeHTTP(w, r)
	})
}

func (p *Proxy) count(method, id, path string, q url.Values) {
	kind := "downstream"
	if id == "local" {
		kind = "local"
	}
	verb := strings.ToLower(method)
	if method == http.MethodGet {
		switch {
		case q.Get("watch") == "true" || q.Get("watch") == "1":
			verb = "watch"
		case isCollection(path):
			verb = "list"
		default:
			verb = "get"
		}
	}
	p.mu.Lock()
	p.counts[kind+" "+verb+" "+resourceOf(path)]++
	p.counts["total"]++
	p.mu.Unlock()
}

// isCollection reports whether path names a collection: /api/v1/<res>,
// /api/v1/namespaces/<ns>/<res>, /apis/<g>/<v>/<res>, /apis/<g>/<v>/namespaces/<ns>/<res>.
func isCollection(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 1 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return false
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		if len(parts) == 2 {
			return false // a namespace itself
		}
		parts = parts[2:]
	}
	return len(parts) == 1
}

func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		g := parts[1]
		parts = parts[3:]
		if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
			parts = parts[2:]
		}
		if len(parts) > 0 {
			return parts[0] + "." + g
		}
		return g
	default:
		return path
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	if len(parts) > 0 {
		return parts[0]
	}
	return ""
}

// Counts returns the requests forwarded so far by "<local|downstream> <verb>
// <resource>", plus "total".
func (p *Proxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// ResetCounts zeroes the counters.
func (p *Proxy) ResetCounts() {
	p.mu.Lock()
	p.counts = map[string]int{}
	p.mu.Unlock()
}

// status answers with a metav1.Status, as the Kubernetes API and Rancher's
// proxy in front of it do.
func status(w http.ResponseWriter, code int, reason, msg string) {
	body, err := json.Marshal(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: metav1.StatusReason(reason), Code: int32(code),
	})
	if err != nil {
		http.Error(w, msg, code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
