package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options tune Start.
type Options struct {
	// AssetsDir holds kube-apiserver and etcd (see FindAssets, EnsureAssets).
	AssetsDir string
	// Dir is where data, certificates and logs go; a new temporary directory
	// when empty (removed by Stop).
	Dir string
	// SkipCRDs leaves out Rancher's and fleetd's CRDs.
	SkipCRDs bool
	// Output, when set, receives both processes' logs as they run; they are
	// always kept in Dir too.
	Output io.Writer
	// StartTimeout bounds the wait for /readyz (default 90s).
	StartTimeout time.Duration
	// ExtraAPIServerFlags are appended to kube-apiserver's command line.
	ExtraAPIServerFlags []string
}

// Env is a running etcd and kube-apiserver.
type Env struct {
	// Config reaches the apiserver as cluster-admin with a bearer token and
	// verified TLS.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file with the same access.
	KubeconfigPath string
	// URL is the apiserver's address, https://127.0.0.1:<port>.
	URL string
	// Token is the cluster-admin bearer token.
	Token string
	// CA signed the apiserver's certificate; CAFile holds it as PEM.
	CA     *CA
	CAFile string
	// Dir holds data, certificates and the logs etcd.log and kube-apiserver.log.
	Dir string

	ownDir   bool
	procs    []*proc
	stopOnce sync.Once
}

type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts etcd and kube-apiserver on free ports of 127.0.0.1, waits
// until the apiserver is ready and installs the CRDs. On error nothing is
// left running. Stop ends both.
func Start(ctx context.Context, opts Options) (*Env, error) {
	if opts.AssetsDir == "" {
		dir, err := FindAssets()
		if err != nil {
			return nil, err
		}
		opts.AssetsDir = dir
	}
	if err := checkAssets(opts.AssetsDir); err != nil {
		return nil, fmt.Errorf("kubetest: assets %s: %w", opts.AssetsDir, err)
	}
	e := &Env{Dir: opts.Dir}
	if e.Dir == "" {
		d, err := os.MkdirTemp("", "fleetd-kubetest-")
		if err != nil {
			return nil, err
		}
		e.Dir, e.ownDir = d, true
	}
	if err := e.start(ctx, opts); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) start(ctx context.Context, opts Options) error {
	ca, err := newCA()
	if err != nil {
		return err
	}
	e.CA = ca
	e.CAFile = filepath.Join(e.Dir, "ca.crt")
	certPEM, keyPEM, err := ca.Issue("kube-apiserver")
	if err != nil {
		return err
	}
	saPub, saKey := filepath.Join(e.Dir, "sa.pub"), filepath.Join(e.Dir, "sa.key")
	tokenBytes := make([]byte, 24)
	if _, err := rand.Read(tokenBytes); err != nil {
		return err
	}
	e.Token = hex.EncodeToString(tokenBytes)
	files := map[string][]byte{
		"ca.crt":        ca.PEM,
		"apiserver.crt": certPEM,
		"apiserver.key": keyPEM,
		"tokens.csv":    []byte(e.Token + ",fleetd-admin,fleetd-admin,system:masters\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(e.Dir, name), b, 0o600); err != nil {
			return err
		}
	}
	if err := serviceAccountKey(saPub, saKey); err != nil {
		return err
	}

	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcd, err := e.run(ctx, opts, "etcd",
		"--name=kubetest",
		"--data-dir="+filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, etcd, http.DefaultClient, clientURL+"/health", "", 30*time.Second); err != nil {
		return err
	}

	e.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	args := []string{
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The endpoint reconciler refuses a loopback address; nothing here
		// needs the kubernetes Service endpoints.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--tls-cert-file=" + filepath.Join(e.Dir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(e.Dir, "apiserver.key"),
		"--client-ca-file=" + e.CAFile,
		"--token-auth-file=" + filepath.Join(e.Dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://127.0.0.1:" + strconv.Itoa(ports[2]),
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		// Nothing creates service accounts without a controller manager, so
		// pods are admitted without one.
		"--disable-admission-plugins=ServiceAccount",
		"--cert-dir=" + filepath.Join(e.Dir, "certs"),
		"--v=0",
	}
	api, err := e.run(ctx, opts, "kube-apiserver", append(args, opts.ExtraAPIServerFlags...)...)
	if err != nil {
		return err
	}
	e.Config = &rest.Config{
		Host:            e.URL,
		BearerToken:     e.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca.PEM},
		QPS:             -1, // no client-side throttling against a test server
	}
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 90 * time.Second
	}
	if err := waitHTTP(ctx, api, tlsClient, e.URL+"/readyz", e.Token, timeout); err != nil {
		return err
	}
	if err := e.writeKubeconfig(); err != nil {
		return err
	}
	if !opts.SkipCRDs {
		if err := InstallCRDs(ctx, e.Config); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) writeKubeconfig() error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: e.URL, CertificateAuthorityData: e.CA.PEM}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: e.Token}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin"}
	kc.CurrentContext = "kubetest"
	e.KubeconfigPath = filepath.Join(e.Dir, "kubeconfig")
	return clientcmd.WriteToFile(*kc, e.KubeconfigPath)
}

// run starts one binary with its log in Dir/<name>.log.
func (e *Env) run(ctx context.Context, opts Options, name string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(e.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	// The process must outlive ctx (which may be a start deadline): Stop ends it.
	cmd := exec.Command(filepath.Join(opts.AssetsDir, name), args...)
	var out io.Writer = logf
	if opts.Output != nil {
		out = io.MultiWriter(logf, prefixWriter(opts.Output, name+": "))
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	p := &proc{name: name, log: logf.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	e.procs = append(e.procs, p)
	return p, nil
}

// Stop ends kube-apiserver, then etcd, and removes the directory Start made.
// It is safe to call more than once.
func (e *Env) Stop() {
	e.stopOnce.Do(func() {
		for i := len(e.procs) - 1; i >= 0; i-- {
			p := e.procs[i]
			select {
			case <-p.done:
				continue
			default:
			}
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if e.ownDir {
			os.RemoveAll(e.Dir)
		}
	})
}

// Logs returns the tail of a process's log (etcd or kube-apiserver), for
// error messages.
func (e *Env) Logs(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func waitHTTP(ctx context.Context, p *proc, client *http.Client, url, token string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("kubetest: %s exited before it was ready: %v; log:\n%s", p.name, p.err, tailLog(p))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kubetest: %s not ready after %v: %w; log:\n%s", p.name, timeout, last, tailLog(p))
}

func tailLog(p *proc) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

type prefixed struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func prefixWriter(w io.Writer, prefix string) io.Writer { return &prefixed{w: w, prefix: prefix} }

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if _, err := io.WriteString(p.w, p.prefix); err != nil {
			return 0, err
		}
		if _, err := p.w.Write(line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
