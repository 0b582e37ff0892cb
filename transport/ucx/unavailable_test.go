//go:build !ucx || !cgo

package ucx_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/velo-messenger/velo/transport/ucx"
)

// Without the tag the package builds, and says how to get UCX.
func TestUnavailable(t *testing.T) {
	tr, err := ucx.New(ucx.Options{})
	if !errors.Is(err, ucx.ErrUnavailable) || tr != nil {
		t.Fatalf("New = %v, %v; want nil, ErrUnavailable", tr, err)
	}
	for _, want := range []string{"libucx-dev", "-tags ucx"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	var zero *ucx.Transport
	if _, err := zero.Listen(context.Background(), nil); !errors.Is(err, ucx.ErrUnavailable) {
		t.Errorf("Listen = %v", err)
	}
	if ucx.Available {
		t.Error("Available is true without the tag")
	}
}
