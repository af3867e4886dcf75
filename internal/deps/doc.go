// Package deps holds the test that enforces which packages each fleetd
// package may import (STYLE.md 13). It has no code of its own.
package deps
