package git

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The benchmark fleet repo: 10,000 cluster files in 100 team folders, added
// by 10,000 commits (one per cluster), built once with git fast-import.
const (
	benchTeams    = 100
	benchClusters = 10000
)

var bench struct {
	once sync.Once
	root string
	bare string
	err  error
	seq  atomic.Int64
}

func cleanupBenchFixture() {
	if bench.root != "" {
		os.RemoveAll(bench.root)
	}
}

func benchCluster(i int) string {
	return fmt.Sprintf("clusters/team%03d/cluster%05d.yaml", i%benchTeams, i)
}

// benchRepo returns the shared 10,000-cluster bare repository.
func benchRepo(b *testing.B) string {
	b.Helper()
	bench.once.Do(func() {
		// FLEETD_GIT_BENCH_REPO reuses a fixture built by an earlier run
		// (it is kept when the variable names a missing directory).
		if keep := os.Getenv("FLEETD_GIT_BENCH_REPO"); keep != "" {
			bench.bare = keep
			if _, err := os.Stat(keep); err == nil {
				return
			}
		} else if bench.root, bench.err = os.MkdirTemp("", "fleetd-git-bench-"); bench.err == nil {
			bench.bare = filepath.Join(bench.root, "fleet.git")
		}
		if bench.err != nil {
			return
		}
		start := time.Now()
		defer func() { b.Logf("built the benchmark repository in %v", time.Since(start)) }()
		if _, bench.err = runGit(filepath.Dir(bench.bare), nil, "init", "-q", "--bare", bench.bare); bench.err != nil {
			return
		}
		for _, kv := range [][2]string{{"receive.autogc", "false"}, {"core.fsync", "none"}, {"http.receivepack", "true"}} {
			if _, bench.err = runGit(bench.bare, nil, "config", kv[0], kv[1]); bench.err != nil {
				return
			}
		}
		bench.err = fastImport(bench.bare, func(w *bufio.Writer) {
			start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
			fleet := "apiVersion: fleetd.io/v1alpha1\nkind: Fleet\nname: bench\n"
			fmt.Fprintf(w, "commit refs/heads/main\ncommitter Dev <dev@example.com> %d +0000\ndata 5\nfleet\n", start)
			fmt.Fprintf(w, "M 100644 inline fleet.yaml\ndata %d\n%s\n", len(fleet), fleet)
			for i := 0; i < benchClusters; i++ {
				body := fmt.Sprintf("apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: cluster%05d\nteam: team%03d\nprovider: aws-eu\nclass: standard\n", i, i%benchTeams)
				msg := fmt.Sprintf("add cluster%05d", i)
				fmt.Fprintf(w, "commit refs/heads/main\ncommitter Dev <dev@example.com> %d +0000\ndata %d\n%s\n", start+int64(i+1)*60, len(msg), msg)
				fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", benchCluster(i), len(body), body)
			}
		})
		if bench.err == nil {
			_, bench.err = runGit(bench.bare, nil, "repack", "-adq")
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.bare
}

// fastImport feeds a fast-import stream to git in repo.
func fastImport(repo string, write func(w *bufio.Writer)) error {
	cmd := exec.Command("git", "fast-import", "--quiet", "--done")
	cmd.Dir = repo
	// fast-import's allocator grows and trims the heap for every commit;
	// on some VMs each brk costs ~0.1 ms, which made the import ten times
	// slower.
	cmd.Env = append(os.Environ(), "MALLOC_TOP_PAD_=268435456", "MALLOC_TRIM_THRESHOLD_=1073741824")
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := os.CreateTemp("", "fast-import-out")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(in, 1<<16)
	write(w)
	fmt.Fprintln(w, "done")
	if err := w.Flush(); err != nil {
		return err
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		msg, _ := os.ReadFile(out.Name())
		return fmt.Errorf("git fast-import: %v: %s", err, msg)
	}
	return nil
}

// pushOneCommit adds one commit that changes one cluster file on main.
func pushOneCommit(b *testing.B, bare string) {
	b.Helper()
	n := bench.seq.Add(1)
	err := fastImport(bare, func(w *bufio.Writer) {
		body := fmt.Sprintf("name: changed\nrevision: %d\n", n)
		msg := fmt.Sprintf("change %d", n)
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter Dev <dev@example.com> %d +0000\ndata %d\n%s\nfrom refs/heads/main^0\n", time.Now().Unix(), len(msg), msg)
		fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", benchCluster(int(n)%benchClusters), len(body), body)
	})
	if err != nil {
		b.Fatal(err)
	}
}

func benchOpen(b *testing.B, url string, opts Options) *Repo {
	b.Helper()
	opts.URL = url
	if opts.Dir == "" {
		opts.Dir = b.TempDir()
	}
	opts.Logger = testLogger(discard{})
	r, err := Open(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	if _, err := r.Fetch(context.Background()); err != nil {
		b.Fatal(err)
	}
	return r
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkPollUnchanged is a sync's fetch when nothing was pushed.
func BenchmarkPollUnchanged(b *testing.B) {
	bare := benchRepo(b)
	urls := map[string]string{"file": bare}
	if _, err := os.Stat(gitHTTPBackend); err == nil {
		hg := startHTTPGit(b, filepath.Dir(bare), "token")
		urls["http"] = hg.url + "/fleet.git"
	}
	for _, name := range []string{"file", "http"} {
		url, ok := urls[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			opts := Options{}
			if name == "http" {
				opts.Auth.TokenFile = writeFileB(b, "token")
			}
			r := benchOpen(b, url, opts)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := r.Fetch(ctx)
				if err != nil || res.Downloaded {
					b.Fatalf("Fetch = %+v, %v", res, err)
				}
			}
		})
	}
}

func writeFileB(b *testing.B, content string) string {
	p := filepath.Join(b.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkFetchOneCommit is a sync's fetch after one commit was pushed.
func BenchmarkFetchOneCommit(b *testing.B) {
	bare := benchRepo(b)
	r := benchOpen(b, bare, Options{})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pushOneCommit(b, bare)
		b.StartTimer()
		res, err := r.Fetch(ctx)
		if err != nil || !res.Downloaded {
			b.Fatalf("Fetch = %+v, %v", res, err)
		}
	}
}

// BenchmarkWriteStatus1000 replaces 1,000 status files in one commit.
func BenchmarkWriteStatus1000(b *testing.B) {
	bare := benchRepo(b)
	r := benchOpen(b, bare, Options{StatusBranch: fmt.Sprintf("bench-status-%d", time.Now().UnixNano())})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		files := make(map[string][]byte, 1000)
		for c := 0; c < 1000; c++ {
			files[fmt.Sprintf("status/team%03d/cluster%05d.yaml", c%benchTeams, c)] = []byte(fmt.Sprintf("phase: Ready\nobservedGeneration: %d\nmachines: 5\n", i))
		}
		b.StartTimer()
		res, err := r.WriteStatus(ctx, files, Message{Subject: fmt.Sprintf("status: generation %d", i)})
		if err != nil || !res.Committed || len(res.Changed) != 1000 {
			b.Fatalf("WriteStatus = %d changed, committed %v, %v", len(res.Changed), res.Committed, err)
		}
	}
}

// BenchmarkFirstClone clones the whole repository and reports the peak Go
// heap during the clone (sampled) and the process's peak RSS.
func BenchmarkFirstClone(b *testing.B) {
	bare := benchRepo(b)
	var peak uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		stop := make(chan struct{})
		done := make(chan uint64)
		go func() {
			var max uint64
			t := time.NewTicker(2 * time.Millisecond)
			defer t.Stop()
			for {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > max {
					max = m.HeapInuse
				}
				select {
				case <-stop:
					done <- max
					return
				case <-t.C:
				}
			}
		}()
		b.StartTimer()
		r, err := Open(context.Background(), Options{URL: bare, Dir: dir, Logger: testLogger(discard{})})
		b.StopTimer()
		close(stop)
		if max := <-done; max > base && max-base > peak {
			peak = max - base
		}
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MiB")
	}
}

// BenchmarkCreationTimes computes creation times of 10,000 clusters over
// 10,000 commits: cold (first sync) and after one new commit.
func BenchmarkCreationTimes(b *testing.B) {
	bare := benchRepo(b)
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		r := benchOpen(b, bare, Options{})
		res, _ := r.Fetch(ctx)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r.mu.Lock()
			clear(r.history)
			r.mu.Unlock()
			times, err := r.CreationTimes(ctx, res.Head, "clusters/")
			if err != nil || len(times) != benchClusters {
				b.Fatalf("CreationTimes = %d paths, %v", len(times), err)
			}
		}
	})
	b.Run("one-new-commit", func(b *testing.B) {
		r := benchOpen(b, bare, Options{})
		pushOneCommit(b, bare)
		res, err := r.Fetch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		parent := git(b, bare, "rev-parse", res.Head+"^")
		if _, err := r.CreationTimes(ctx, parent, "clusters/"); err != nil {
			b.Fatal(err)
		}
		// Each iteration starts from the parent's cached result, as the
		// sync after a push does.
		r.mu.Lock()
		atParent := *r.history["clusters"]
		r.mu.Unlock()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			r.mu.Lock()
			c := atParent
			r.history["clusters"] = &c
			r.mu.Unlock()
			b.StartTimer()
			times, err := r.CreationTimes(ctx, res.Head, "clusters/")
			if err != nil || len(times) != benchClusters {
				b.Fatalf("CreationTimes = %d paths, %v", len(times), err)
			}
		}
	})
}

// BenchmarkReadTree reads every file of the 10,000-cluster tree through the
// fs.FS, as the loader does.
func BenchmarkReadTree(b *testing.B) {
	bare := benchRepo(b)
	r := benchOpen(b, bare, Options{})
	ctx := context.Background()
	res, _ := r.Fetch(ctx)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fsys, err := r.FS(ctx, res.Head)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		err = fs.WalkDir(fsys, "clusters", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			_, err = fs.ReadFile(fsys, p)
			n++
			return err
		})
		if err != nil || n != benchClusters {
			b.Fatalf("read %d files: %v", n, err)
		}
	}
}

// BenchmarkSyncRounds is the git part of a daemon's syncs after webhooks:
// each round a person pushes one commit, and the sync fetches it, reads the
// 10,000 cluster files through the fs.FS and pushes a status tree of 10,000
// files of which one changed. It reports the rounds' latency percentiles: a
// repack inside the sync path shows as a p99 far above the p50.
func BenchmarkSyncRounds(b *testing.B) {
	const rounds = 40
	bare := benchRepo(b)
	r := benchOpen(b, bare, Options{StatusBranch: fmt.Sprintf("bench-rounds-%d", time.Now().UnixNano())})
	ctx := context.Background()
	status := make(map[string][]byte, benchClusters)
	for c := 0; c < benchClusters; c++ {
		status[fmt.Sprintf("status/team%03d/cluster%05d.yaml", c%benchTeams, c)] = []byte(fmt.Sprintf("phase: Ready\ncluster: %d\n", c))
	}
	if _, err := r.WriteStatus(ctx, status, Message{Subject: "status: all"}); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < rounds; round++ {
			b.StopTimer()
			pushOneCommit(b, bare)
			n := bench.seq.Load()
			status[fmt.Sprintf("status/team%03d/cluster%05d.yaml", int(n)%benchTeams, int(n)%benchClusters)] = []byte(fmt.Sprintf("phase: Provisioning\nrevision: %d\n", n))
			b.StartTimer()
			start := time.Now()
			res, err := r.Fetch(ctx)
			if err != nil || !res.Downloaded {
				b.Fatalf("Fetch = %+v, %v", res, err)
			}
			fsys, err := r.FS(ctx, res.Head)
			if err != nil {
				b.Fatal(err)
			}
			files := 0
			err = fs.WalkDir(fsys, "clusters", func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				files++
				_, err = fs.ReadFile(fsys, p)
				return err
			})
			if err != nil || files != benchClusters {
				b.Fatalf("read %d files: %v", files, err)
			}
			st, err := r.WriteStatus(ctx, status, Message{Subject: fmt.Sprintf("status: round %d", round)})
			if err != nil || !st.Committed || len(st.Changed) != 1 {
				b.Fatalf("WriteStatus = %+v, %v", st, err)
			}
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms/round")
	b.ReportMetric(pct(0.99), "p99-ms/round")
	b.ReportMetric(pct(1), "max-ms/round")
	b.ReportMetric(0, "ns/op")
}
