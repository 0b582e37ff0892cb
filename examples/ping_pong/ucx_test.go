//go:build ucx

package main

import (
	"testing"

	"github.com/velo-messenger/velo/internal/testchild"
)

// TestUCX builds the program with -tags ucx and runs it over UCX, over
// tcp and over shared memory (-ucx-tls).
func TestUCX(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	bin := testchild.Build(t, "ucx")
	for _, tls := range []string{"tcp", "tcp,sm,self"} {
		t.Run(tls, func(t *testing.T) {
			checkRun(t, bin, 50, "-transport", "ucx", "-ucx-tls", tls, "-warmup", "5")
		})
	}
}
