package git

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// TestWriteStatusRacesPeople writes status 50 times to the tracked branch
// while a person pushes 50 commits to it with the git CLI. Every commit of
// both must end up on the branch, and the server's reflog must show that
// every update of the branch was a fast-forward.
//
// It is not parallel: it runs alone, before the parallel tests, so that the
// machine's load does not turn it into a test of git's speed.
func TestWriteStatusRacesPeople(t *testing.T) {
	const n = 50
	f := newFixture(t)
	people := map[string]string{}
	for i := 0; i < n; i++ {
		people[fmt.Sprintf("clusters/people/c%d.yaml", i)] = fmt.Sprintf("name: c%d\n", i)
	}
	f.commit("people's clusters", people)
	r, _ := open(t, f.bare, Options{StatusBranch: "main"})
	ctx := context.Background()

	var wg sync.WaitGroup
	var pushedByPerson atomic.Int64
	var personDone atomic.Bool
	conflicts := 0
	wg.Add(2)
	go func() {
		defer wg.Done()
		start := time.Now()
		defer func() { t.Logf("status writer took %v", time.Since(start)) }()
		for i := 0; i < n; i++ {
			// Keep pace with the person, so the two race from the first
			// push to the last.
			for pushedByPerson.Load() < int64(i) && !personDone.Load() {
				time.Sleep(time.Millisecond)
			}
			msg := Message{Subject: fmt.Sprintf("status: write %d", i)}
			for {
				_, err := r.WriteStatus(ctx, files("counter.yaml", fmt.Sprintf("n: %d\n", i)), msg)
				if errors.Is(err, ErrConflict) {
					conflicts++ // the next sync would try again
					continue
				}
				if err != nil {
					t.Errorf("WriteStatus %d: %v", i, err)
					return
				}
				break
			}
		}
	}()
	go func() {
		defer wg.Done()
		start := time.Now()
		defer func() { t.Logf("person took %v", time.Since(start)) }()
		defer personDone.Store(true)
		for i := 0; i < n; i++ {
			p := filepath.Join(f.work, "clusters", "people", fmt.Sprintf("c%d.yaml", i))
			if err := os.WriteFile(p, []byte(fmt.Sprintf("name: c%d\nreplicas: 1\n", i)), 0o644); err != nil {
				t.Error(err)
				return
			}
			if _, err := runGit(f.work, nil, "commit", "-qam", fmt.Sprintf("human %d", i)); err != nil {
				t.Error(err)
				return
			}
			pushed := false
			for try := 0; try < 50 && !pushed; try++ {
				if _, err := runGit(f.work, nil, "push", "-q", "origin", "HEAD:main"); err == nil {
					pushed = true
					break
				}
				if _, err := runGit(f.work, nil, "pull", "-q", "--rebase", "origin", "main"); err != nil {
					t.Error(err)
					return
				}
			}
			if !pushed {
				t.Errorf("human commit %d was never pushed", i)
				return
			}
			pushedByPerson.Add(1)
		}
	}()
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("status writes that hit ErrConflict after 5 tries: %d", conflicts)

	subjects := strings.Split(git(t, f.bare, "log", "--format=%s", "main"), "\n")
	count := map[string]int{}
	for _, s := range subjects {
		count[s]++
	}
	for i := 0; i < n; i++ {
		for _, s := range []string{fmt.Sprintf("human %d", i), fmt.Sprintf("status: write %d", i)} {
			if count[s] != 1 {
				t.Errorf("%q is on main %d times, want once", s, count[s])
			}
		}
	}
	if got := git(t, f.bare, "show", "main:status/counter.yaml"); got != fmt.Sprintf("n: %d", n-1) {
		t.Errorf("final status = %q", got)
	}

	// Every update of main recorded by the server is a fast-forward.
	repo, err := gogit.PlainOpen(f.bare)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := os.Open(filepath.Join(f.bare, "logs", "refs", "heads", "main"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	updates := 0
	sc := bufio.NewScanner(lf)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		oldH, newH := plumbing.NewHash(fields[0]), plumbing.NewHash(fields[1])
		updates++
		if oldH.IsZero() {
			continue
		}
		oc, err := repo.CommitObject(oldH)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := repo.CommitObject(newH)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := oc.IsAncestor(nc); err != nil || !ok {
			t.Errorf("update %s -> %s of main is not a fast-forward (forced push)", oldH, newH)
		}
	}
	if updates < 2*n+1 {
		t.Errorf("server reflog has %d updates, want at least %d", updates, 2*n+1)
	}
}
