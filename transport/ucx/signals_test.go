//go:build ucx && cgo

package ucx_test

import (
	"testing"

	"github.com/velo-messenger/velo/transport/ucx"
)

// UCX installs handlers for fatal signals when it loads; Go's own must
// still turn a nil dereference in Go code into a panic that recover sees.
func TestGoPanicsSurviveUCX(t *testing.T) {
	tr := newTransport(t, ucx.DefaultTransports)
	defer tr.Close()
	var p *struct{ x int }
	recovered := func() (r any) {
		defer func() { r = recover() }()
		_ = p.x
		return nil
	}()
	if recovered == nil {
		t.Fatal("the nil dereference did not panic")
	}
}
