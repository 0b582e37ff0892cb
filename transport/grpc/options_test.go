package grpc_test

import (
	"strings"
	"testing"
	"time"

	velogrpc "github.com/velo-messenger/velo/transport/grpc"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts velogrpc.Options
		want string // "" for valid options; else a part of the error
	}{
		{"zero", velogrpc.Options{}, ""},
		{"negative dial timeout", velogrpc.Options{DialTimeout: -time.Second}, "velo: grpc: negative DialTimeout -1s"},
		{"negative max frame", velogrpc.Options{MaxFrame: -1}, "velo: grpc: negative MaxFrame -1"},
		{"negative max conns", velogrpc.Options{MaxConns: -3}, "velo: grpc: negative MaxConns -3"},
		{"negative read buffer", velogrpc.Options{ReadBuffer: -5}, "velo: grpc: negative ReadBuffer -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			transporttest.CheckOptions(t, velogrpc.New(tc.opts), tc.want)
		})
	}
}
