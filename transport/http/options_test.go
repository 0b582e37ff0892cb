package http_test

import (
	"strings"
	"testing"
	"time"

	velohttp "github.com/velo-messenger/velo/transport/http"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts velohttp.Options
		want string // "" for valid options; else a part of the error
	}{
		{"zero", velohttp.Options{}, ""},
		{"h2c, keepalive off", velohttp.Options{Protocol: velohttp.H2C, KeepAlive: -1}, ""},
		{"path without slash", velohttp.Options{Path: "no-slash"}, `velo: http: Path "no-slash" does not start with /`},
		{"unknown protocol", velohttp.Options{Protocol: 7}, "velo: http: unknown Protocol 7"},
		{"negative dial timeout", velohttp.Options{DialTimeout: -time.Second}, "velo: http: negative DialTimeout -1s"},
		{"negative max frame", velohttp.Options{MaxFrame: -1}, "velo: http: negative MaxFrame -1"},
		{"negative max conns", velohttp.Options{MaxConns: -3}, "velo: http: negative MaxConns -3"},
		{"negative read buffer", velohttp.Options{ReadBuffer: -5}, "velo: http: negative ReadBuffer -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			transporttest.CheckOptions(t, velohttp.New(tc.opts), tc.want)
		})
	}
}
