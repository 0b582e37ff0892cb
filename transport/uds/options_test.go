package uds_test

import (
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo/transport/transporttest"
	"github.com/velo-messenger/velo/transport/uds"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts uds.Options
		want string // "" for valid options; else a part of the error
	}{
		{"zero", uds.Options{}, ""},
		{"mode", uds.Options{Mode: 0o660}, ""},
		{"path too long", uds.Options{Path: "/tmp/" + strings.Repeat("x", 200)}, "velo: uds: Path of 205 bytes is longer than the 107"},
		{"mode not a permission", uds.Options{Mode: 0o4600}, "velo: uds: Mode 04600 has bits other than permissions"},
		{"negative dial timeout", uds.Options{DialTimeout: -time.Millisecond}, "velo: uds: negative DialTimeout -1ms"},
		{"negative max frame", uds.Options{MaxFrame: -1}, "velo: uds: negative MaxFrame -1"},
		{"negative max conns", uds.Options{MaxConns: -3}, "velo: uds: negative MaxConns -3"},
		{"negative read buffer", uds.Options{ReadBuffer: -5}, "velo: uds: negative ReadBuffer -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			transporttest.CheckOptions(t, uds.New(tc.opts), tc.want)
		})
	}
}
