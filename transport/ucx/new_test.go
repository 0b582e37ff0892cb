//go:build ucx && cgo

package ucx_test

import (
	"strings"
	"testing"

	"github.com/velo-messenger/velo/transport/ucx"
)

// New refuses what UCX cannot run with a message that says why.
func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		o    ucx.Options
		want string
	}{
		{ucx.Options{Window: -1}, "negative Window"},
		{ucx.Options{Transports: "sm,self"}, `has no tcp`},
		{ucx.Options{NetDevices: "no-such-device"}, "velo: ucx:"},
	} {
		tr, err := ucx.New(tc.o)
		if err == nil {
			tr.Close()
			t.Errorf("New(%+v) succeeded, want an error with %q", tc.o, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tc.o, err, tc.want)
		}
	}
	if !ucx.Available {
		t.Error("Available is false in a build with the tag")
	}
}
