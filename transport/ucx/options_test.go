package ucx_test

import (
	"strings"
	"testing"

	"github.com/velo-messenger/velo/transport/ucx"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o    ucx.Options
		want string // "" for valid
	}{
		{ucx.Options{}, ""},
		{ucx.Options{Transports: ucx.SharedMemory, Window: ucx.MaxWindow, Spin: -1}, ""},
		{ucx.Options{Window: -1}, "velo: ucx: negative Window -1"},
		{ucx.Options{Window: ucx.MaxWindow + 1}, "velo: ucx: Window 1073741825 is over 1073741824"},
		{ucx.Options{MaxFrame: -1}, "velo: ucx: negative MaxFrame -1"},
		{ucx.Options{DialTimeout: -1}, "velo: ucx: negative DialTimeout -1ns"},
		{ucx.Options{MaxConns: -2}, "velo: ucx: negative MaxConns -2"},
	} {
		err := tc.o.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: Validate = %v, want nil", tc.o, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: Validate = %v, want %q", tc.o, err, tc.want)
		}
	}
}
