package vcsimserver

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
)

func TestMainRejectsBadArguments(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-nope"}, "not defined"},
		{"stray argument", []string{"extra"}, "unexpected arguments"},
		{"user without password", []string{"-username", "u"}, "go together"},
		{"address in use", []string{"-listen", busy.Addr().String()}, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Main(context.Background(), tc.args, &out, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Main(%q): %v, want an error with %q", tc.args, err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q on failure", out.String())
			}
		})
	}
}

func TestSeedAndCount(t *testing.T) {
	s, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids, err := s.Seed(context.Background(), []SeedVM{
		{Folder: "fleetd/a/b", Name: "vm-1", ExtraConfig: map[string]string{"guestinfo.x": "1"}},
		{Folder: "fleetd/a/b", Name: "vm-2"},
	})
	if err != nil || len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("Seed: %v, %v", ids, err)
	}
	if s.Requests() != 0 {
		t.Errorf("%d SOAP requests counted; seeding bypasses HTTP", s.Requests())
	}
}
