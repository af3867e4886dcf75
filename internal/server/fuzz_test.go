package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
)

// The parsers read bodies from the network (after the signature check, but
// a sender with the secret is still untrusted input): they must never panic,
// and what they accept must survive a round trip through the sender's
// format unchanged.

func FuzzGitLabPush(f *testing.F) {
	f.Add(glPush("refs/heads/main"))
	f.Add([]byte(`{"object_kind":"tag_push","ref":"refs/tags/v1"}`))
	f.Add([]byte(`{"object_kind":"push","ref":""}`))
	f.Add([]byte(`{"object_kind":"push","ref":"refs/heads/main"} trailing`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseGitLabPush(body)
		if err != nil {
			return
		}
		if p.Ref == "" {
			t.Fatal("accepted a push without a ref")
		}
		var out gitlabPush
		out.ObjectKind, out.Ref, out.Before, out.After = "push", p.Ref, p.Before, p.After
		out.Project.PathWithNamespace = p.Repository
		b, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseGitLabPush(b)
		if err != nil || again != p {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, p)
		}
	})
}

func FuzzGitHubPush(f *testing.F) {
	f.Add(ghPush("refs/heads/main"))
	f.Add([]byte(`{"ref":"refs/tags/v1","deleted":true}`))
	f.Add([]byte(`{"ref":5}`))
	f.Add([]byte(`{"ref":"refs/heads/\u0000"}`))
	f.Add([]byte(` {"ref":"refs/heads/x"}{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseGitHubPush(body)
		if err != nil {
			return
		}
		if p.Ref == "" {
			t.Fatal("accepted a push without a ref")
		}
		if b, ok := p.Branch(); ok && "refs/heads/"+b != p.Ref {
			t.Fatalf("branch %q of ref %q", b, p.Ref)
		}
		var out githubPush
		out.Ref, out.Before, out.After, out.Repository.FullName = p.Ref, p.Before, p.After, p.Repository
		b, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseGitHubPush(b)
		if err != nil || again != p {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, p)
		}
	})
}

func FuzzGitHubPing(f *testing.F) {
	f.Add([]byte(`{"zen":"Design for failure.","hook_id":123,"hook":{"type":"Repository"}}`))
	f.Add([]byte(`{"hook_id":-1}`))
	f.Add([]byte(`{"hook_id":1e400}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseGitHubPing(body)
		if err != nil {
			return
		}
		b, err := json.Marshal(githubPing{Zen: p.Zen, HookID: p.HookID})
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseGitHubPing(b)
		if err != nil || again != p {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, p)
		}
	})
}

// FuzzGitHubWebhook sends bodies through the whole GitHub route: the
// streamed HMAC, the slot's buffer and the parsers. It never panics; a body
// signed with the secret is never refused as unauthorized, and one signed
// otherwise always is, whatever it holds.
func FuzzGitHubWebhook(f *testing.F) {
	f.Add(ghPush("refs/heads/main"), true, "push")
	f.Add(ghPush("refs/heads/main"), false, "push")
	f.Add([]byte(`{"zen":"x","hook_id":1}`), true, "ping")
	f.Add([]byte(`{"ref":`), true, "push")
	f.Add([]byte{}, true, "issues")
	// One server for every input: no delivery ID is sent, so nothing of one
	// input changes how the next is answered.
	e := newEnv(f, func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) })
	f.Fuzz(func(t *testing.T, body []byte, signed bool, event string) {
		secret := ghSecret
		if !signed {
			secret = "not-the-secret"
		}
		w := e.do(github(event, "", body, sign(body, secret)))
		switch {
		case !signed && w.Code != http.StatusUnauthorized:
			t.Fatalf("a wrong signature got %d", w.Code)
		case signed && w.Code == http.StatusUnauthorized:
			t.Fatalf("a good signature was refused: %s", w.Body)
		case w.Code != 200 && w.Code != 202 && w.Code != 400 && w.Code != 401 && w.Code != 413:
			t.Fatalf("status %d", w.Code)
		}
	})
}
