//go:build !unix

package main

// lockWorkDir does nothing where flock(2) does not exist.
func lockWorkDir(string) (func(), error) { return func() {}, nil }
