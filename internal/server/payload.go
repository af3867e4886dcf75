package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Push is what fleetd needs from a push event of GitLab or GitHub.
type Push struct {
	// Ref is the full ref pushed, refs/heads/<branch> for a branch.
	Ref string
	// Before and After are the commits before and after the push; After is
	// all zeros when the branch was deleted.
	Before, After string
	// Repository names the repository (GitLab's path_with_namespace,
	// GitHub's full_name), for logs.
	Repository string
}

// Branch returns the branch pushed and whether Ref is a branch at all.
func (p Push) Branch() (string, bool) {
	b, ok := strings.CutPrefix(p.Ref, "refs/heads/")
	return b, ok && b != ""
}

// errNotPush says a GitLab body is valid JSON of another kind of event.
var errNotPush = errors.New("not a push event")

type gitlabPush struct {
	ObjectKind string `json:"object_kind"`
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Project    struct {
		PathWithNamespace string `json:"path_with_namespace"`
	} `json:"project"`
}

// ParseGitLabPush parses the body of a GitLab "Push Hook". It returns an
// error wrapping errNotPush when the body is another kind of event, and
// another error when the body is not a push payload at all.
func ParseGitLabPush(body []byte) (Push, error) {
	var p gitlabPush
	if err := unmarshalObject(body, &p); err != nil {
		return Push{}, fmt.Errorf("gitlab push: %w", err)
	}
	if p.ObjectKind != "push" {
		return Push{}, fmt.Errorf("gitlab: object_kind %q: %w", p.ObjectKind, errNotPush)
	}
	if p.Ref == "" {
		return Push{}, errors.New("gitlab push: no ref")
	}
	return Push{Ref: p.Ref, Before: p.Before, After: p.After, Repository: p.Project.PathWithNamespace}, nil
}

type githubPush struct {
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// ParseGitHubPush parses the body of a GitHub "push" event.
func ParseGitHubPush(body []byte) (Push, error) {
	var p githubPush
	if err := unmarshalObject(body, &p); err != nil {
		return Push{}, fmt.Errorf("github push: %w", err)
	}
	if p.Ref == "" {
		return Push{}, errors.New("github push: no ref")
	}
	return Push{Ref: p.Ref, Before: p.Before, After: p.After, Repository: p.Repository.FullName}, nil
}

// Ping is GitHub's "ping" event, sent when a webhook is created.
type Ping struct {
	Zen    string
	HookID int64
}

type githubPing struct {
	Zen    string `json:"zen"`
	HookID int64  `json:"hook_id"`
}

// ParseGitHubPing parses the body of a GitHub "ping" event.
func ParseGitHubPing(body []byte) (Ping, error) {
	var p githubPing
	if err := unmarshalObject(body, &p); err != nil {
		return Ping{}, fmt.Errorf("github ping: %w", err)
	}
	return Ping{Zen: p.Zen, HookID: p.HookID}, nil
}

// unmarshalObject decodes a JSON object into v; anything but one object
// (null, an array, trailing data) is an error.
func unmarshalObject(body []byte, v any) error {
	trimmed := strings.TrimSpace(string(body))
	if !strings.HasPrefix(trimmed, "{") {
		return errors.New("body is not a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
