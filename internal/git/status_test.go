package git

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func files(kv ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i < len(kv); i += 2 {
		m["status/"+kv[i]] = []byte(kv[i+1])
	}
	return m
}

func lsTree(t *testing.T, bare, rev string) []string {
	t.Helper()
	out := git(t, bare, "ls-tree", "-r", "--name-only", rev)
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

func TestWriteStatusOwnBranch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	mainHead := f.head("main")
	r, _ := open(t, f.bare, Options{Author: Signature{Name: "fleetd", Email: "fleetd@acme.example"}})
	ctx := context.Background()

	steps := []struct {
		name        string
		files       map[string][]byte
		msg         Message
		wantCommit  bool
		wantChanged []string
		wantTree    []string
	}{
		{
			name:        "creates the orphan status branch",
			files:       files("payments/prod.yaml", "phase: Provisioning\n", "SUMMARY.md", "# Fleet\n"),
			msg:         StatusMessage([]ClusterChange{{Cluster: "payments/prod", Summary: "Provisioning"}}),
			wantCommit:  true,
			wantChanged: []string{"status/SUMMARY.md", "status/payments/prod.yaml"},
			wantTree:    []string{"status/SUMMARY.md", "status/payments/prod.yaml"},
		},
		{
			name:     "same files make no commit",
			files:    files("payments/prod.yaml", "phase: Provisioning\n", "SUMMARY.md", "# Fleet\n"),
			msg:      Message{Subject: "status: nothing"},
			wantTree: []string{"status/SUMMARY.md", "status/payments/prod.yaml"},
		},
		{
			name:        "replaces the content of status/",
			files:       files("payments/prod.yaml", "phase: Ready\n", "qa/pr-77.yaml", "phase: Provisioning\n"),
			msg:         StatusMessage([]ClusterChange{{Cluster: "qa/pr-77", Summary: "Provisioning"}, {Cluster: "payments/prod", Summary: "Ready"}}),
			wantCommit:  true,
			wantChanged: []string{"status/SUMMARY.md", "status/payments/prod.yaml", "status/qa/pr-77.yaml"},
			wantTree:    []string{"status/payments/prod.yaml", "status/qa/pr-77.yaml"},
		},
		{
			name:        "no files empty status/",
			files:       nil,
			msg:         Message{Subject: "status: fleet is empty"},
			wantCommit:  true,
			wantChanged: []string{"status/payments/prod.yaml", "status/qa/pr-77.yaml"},
		},
	}
	var prev string
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			res, err := r.WriteStatus(ctx, s.files, s.msg)
			if err != nil {
				t.Fatal(err)
			}
			head := f.head(DefaultStatusBranch)
			if res.Committed != s.wantCommit || res.Commit != head || !slices.Equal(res.Changed, s.wantChanged) {
				t.Fatalf("WriteStatus = %+v, want committed %v commit %s changed %v", res, s.wantCommit, head, s.wantChanged)
			}
			if !s.wantCommit && head != prev {
				t.Fatalf("status branch moved from %s to %s without a change", prev, head)
			}
			if got := lsTree(t, f.bare, head); !slices.Equal(got, s.wantTree) {
				t.Fatalf("status branch tree = %v, want %v", got, s.wantTree)
			}
			if s.wantCommit {
				got := git(t, f.bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", head)
				want := "fleetd <fleetd@acme.example>|fleetd <fleetd@acme.example>|" + strings.TrimSpace(s.msg.String())
				if got != want {
					t.Fatalf("commit = %q, want %q", got, want)
				}
				parents := git(t, f.bare, "log", "-1", "--format=%P", head)
				if (i == 0) != (parents == "") || (i > 0 && parents != prev) {
					t.Fatalf("parents of status commit %d = %q, previous %s", i, parents, prev)
				}
			}
			if f.head("main") != mainHead {
				t.Fatal("writing status moved the tracked branch")
			}
			prev = head
		})
	}
	t.Run("status files read back", func(t *testing.T) {
		if _, err := r.WriteStatus(ctx, files("a/b.yaml", "x: 1\n"), Message{Subject: "status: a/b"}); err != nil {
			t.Fatal(err)
		}
		got, commit, err := r.ReadStatus(ctx)
		if err != nil || commit != f.head(DefaultStatusBranch) || len(got) != 1 || string(got["status/a/b.yaml"]) != "x: 1\n" {
			t.Fatalf("ReadStatus = %v, %s, %v", got, commit, err)
		}
	})
	t.Run("git fsck accepts the objects", func(t *testing.T) {
		git(t, f.bare, "fsck", "--strict", "--no-progress")
		git(t, r.dir, "fsck", "--strict", "--no-progress")
	})
}

func TestWriteStatusTrackedBranch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r, _ := open(t, f.bare, Options{StatusBranch: "main"})
	ctx := context.Background()
	outside := func() string {
		return git(t, f.bare, "rev-parse", "main:clusters") + git(t, f.bare, "rev-parse", "main:fleet.yaml")
	}
	before := outside()

	first := mustFetch(t, r)
	res, err := r.WriteStatus(ctx, files("payments/prod.yaml", "phase: Ready\n"), Message{Subject: "status: payments/prod Ready"})
	if err != nil || !res.Committed {
		t.Fatalf("WriteStatus = %+v, %v", res, err)
	}
	if outside() != before {
		t.Fatal("a status commit changed paths outside status/")
	}
	if got := lsTree(t, f.bare, "main"); !slices.Contains(got, "fleet.yaml") || !slices.Contains(got, "status/payments/prod.yaml") {
		t.Fatalf("main tree = %v", got)
	}

	t.Run("a status-only commit is not a desired change", func(t *testing.T) {
		got := mustFetch(t, r)
		if got.Head != res.Commit || !got.Changed || got.Desired != first.Head || got.DesiredChanged {
			t.Fatalf("Fetch = %+v, want head %s with desired still %s", got, res.Commit, first.Head)
		}
		changed, err := r.DesiredChanged(ctx, first.Head, got.Head)
		if err != nil || changed {
			t.Fatalf("DesiredChanged = %v, %v; want false", changed, err)
		}
	})
	t.Run("a person's commit is a desired change", func(t *testing.T) {
		human := f.commit("add qa", map[string]string{"clusters/qa/pr-77.yaml": "name: pr-77\n"})
		got := mustFetch(t, r)
		if got.Head != human || got.Desired != human || !got.DesiredChanged {
			t.Fatalf("Fetch = %+v, want desired %s", got, human)
		}
		changed, err := r.DesiredChanged(ctx, res.Commit, human)
		if err != nil || !changed {
			t.Fatalf("DesiredChanged = %v, %v; want true", changed, err)
		}
	})
	t.Run("status lands on top of the person's commit", func(t *testing.T) {
		human := f.head("main")
		res2, err := r.WriteStatus(ctx, files("payments/prod.yaml", "phase: Ready\n", "qa/pr-77.yaml", "phase: Provisioning\n"), Message{Subject: "status: qa/pr-77 Provisioning"})
		if err != nil || !res2.Committed {
			t.Fatalf("WriteStatus = %+v, %v", res2, err)
		}
		if parent := git(t, f.bare, "rev-parse", res2.Commit+"^"); parent != human {
			t.Fatalf("status commit parent = %s, want %s", parent, human)
		}
		got := mustFetch(t, r)
		if got.Desired != human || got.DesiredChanged {
			t.Fatalf("Fetch = %+v, want desired %s unchanged", got, human)
		}
	})
}

func TestWriteStatusInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r, _ := open(t, f.bare, Options{})
	tests := []struct {
		name  string
		files map[string][]byte
		msg   Message
		want  string
	}{
		{"empty subject", files("a.yaml", "x"), Message{}, "subject"},
		{"multi-line subject", files("a.yaml", "x"), Message{Subject: "a\nb"}, "subject"},
		{"parent directory", files("../a.yaml", "x"), Message{Subject: "s"}, "invalid status path"},
		{"absolute path", files("/a.yaml", "x"), Message{Subject: "s"}, "invalid status path"},
		{"git directory", files("x/.git/config", "x"), Message{Subject: "s"}, ".git is reserved"},
		{"file and directory", files("a", "x", "a/b", "y"), Message{Subject: "s"}, "also a"},
		{"outside status/", map[string][]byte{"clusters/qa/a.yaml": []byte("x")}, Message{Subject: "s"}, "status files are under status/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.WriteStatus(context.Background(), tt.files, tt.msg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteStatus error = %v, want %q", err, tt.want)
			}
		})
	}
	if h := f.head(DefaultStatusBranch); h != "" {
		t.Fatalf("an invalid write created the status branch at %s", h)
	}
}

func TestWriteStatusRefusedByRemote(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	hook := filepath.Join(f.bare, "hooks", "pre-receive")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'status is frozen' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, _ := open(t, f.bare, Options{})
	res, err := r.WriteStatus(context.Background(), files("a.yaml", "x"), Message{Subject: "status: a"})
	if err == nil || errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "git: push "+f.bare+" branch fleet-status: remote rejected") {
		t.Fatalf("WriteStatus = %+v, %v; want a rejection that is not a conflict", res, err)
	}
}

func TestStatusMessage(t *testing.T) {
	t.Parallel()
	many := make([]ClusterChange, 12)
	for i := range many {
		many[i] = ClusterChange{Cluster: "team" + string(rune('a'+i)) + "/cluster", Summary: "Ready (workers 5/5)"}
	}
	tests := []struct {
		name        string
		changes     []ClusterChange
		wantSubject string
		wantBody    string
	}{
		{"none", nil, "status: update summary", ""},
		{"one", []ClusterChange{{"payments/prod-eu", "Ready (workers 5/5)"}}, "status: payments/prod-eu Ready (workers 5/5)", "- payments/prod-eu Ready (workers 5/5)\n"},
		{
			"two sorted",
			[]ClusterChange{{"qa/pr-77", "Provisioning"}, {"payments/prod", "Ready"}},
			"status: payments/prod Ready, qa/pr-77 Provisioning",
			"- payments/prod Ready\n- qa/pr-77 Provisioning\n",
		},
		{
			"many are truncated",
			many,
			"status: teama/cluster Ready, teamb/cluster Ready and 10 more",
			"",
		},
		{
			"phases only when the summaries do not fit",
			[]ClusterChange{{"payments/prod", "Scaling (control 3/3, workers 6/8)"}, {"trading/dev", "Decommissioning (control 0/0)"}},
			"status: payments/prod Scaling, trading/dev Decommissioning",
			"",
		},
		{
			"a name longer than the line is cut",
			[]ClusterChange{{"payments/" + strings.Repeat("x", 63), "Ready"}, {"qa/a", "Ready"}},
			"status: payments/" + strings.Repeat("x", 41) + "… and 1 more",
			"",
		},
		{"summary on one line", []ClusterChange{{"a/b", "Failed:\n  boom"}}, "status: a/b Failed: boom", "- a/b Failed: boom\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := StatusMessage(tt.changes)
			if m.Subject != tt.wantSubject {
				t.Errorf("subject = %q, want %q", m.Subject, tt.wantSubject)
			}
			if len(m.Subject) > MaxSubjectLen {
				t.Errorf("subject is %d long", len(m.Subject))
			}
			if tt.wantBody != "" && m.Body != tt.wantBody {
				t.Errorf("body = %q, want %q", m.Body, tt.wantBody)
			}
			if got := strings.Count(m.Body, "\n"); got != len(tt.changes) {
				t.Errorf("body has %d lines, want one per cluster (%d)", got, len(tt.changes))
			}
		})
	}
}

func TestPacksAreCompacted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r, logs := open(t, f.bare, Options{})
	const limit = 4
	r.mu.Lock()
	r.packLimit = limit
	r.mu.Unlock()
	ctx := context.Background()
	for i := 0; i < limit+4; i++ {
		if i%4 == 0 {
			f.commit("more", map[string]string{"clusters/qa/c.yaml": strings.Repeat("x", i+1)})
			mustFetch(t, r)
		}
		if _, err := r.WriteStatus(ctx, files("qa/c.yaml", strings.Repeat("y", i+1)), Message{Subject: "status: qa/c"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(packPaths(t, r.dir, ".pack")); n > 2*limit {
		t.Fatalf("%d packs after status pushes, want at most %d", n, 2*limit)
	}
	// A poll that finds nothing new compacts down to the limit.
	if res := mustFetch(t, r); res.Changed {
		t.Fatalf("Fetch = %+v, want it unchanged", res)
	}
	if n := len(packPaths(t, r.dir, ".pack")); n > limit {
		t.Fatalf("%d packs after an unchanged poll, want at most %d", n, limit)
	}
	if !strings.Contains(logs.String(), "Compacted pack files") {
		t.Fatalf("no compaction logged:\n%s", logs)
	}
	git(t, r.dir, "fsck", "--strict", "--no-progress")
	got, _, err := r.ReadStatus(ctx)
	if err != nil || string(got["status/qa/c.yaml"]) != strings.Repeat("y", limit+4) {
		t.Fatalf("ReadStatus after compaction = %q, %v", got["status/qa/c.yaml"], err)
	}
	res := mustFetch(t, r)
	times, err := r.CreationTimes(ctx, res.Head, "clusters/")
	if err != nil || len(times) != 2 {
		t.Fatalf("CreationTimes after compaction = %v, %v", times, err)
	}
}
