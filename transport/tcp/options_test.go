package tcp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts tcp.Options
		want string // "" for valid options; else a part of the error
	}{
		{"zero", tcp.Options{}, ""},
		{"keepalive off", tcp.Options{KeepAlive: -1}, ""},
		{"negative dial timeout", tcp.Options{DialTimeout: -5 * time.Second}, "velo: tcp: negative DialTimeout -5s"},
		{"negative max frame", tcp.Options{MaxFrame: -1}, "velo: tcp: negative MaxFrame -1"},
		{"negative max conns", tcp.Options{MaxConns: -3}, "velo: tcp: negative MaxConns -3"},
		{"negative read buffer", tcp.Options{ReadBuffer: -5}, "velo: tcp: negative ReadBuffer -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			transporttest.CheckOptions(t, tcp.New(tc.opts), tc.want)
		})
	}
}

func TestOptionsReportEveryBadField(t *testing.T) {
	err := tcp.Options{DialTimeout: -1, ReadBuffer: -1}.Validate()
	for _, f := range []string{"DialTimeout -1ns", "ReadBuffer -1"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Validate = %v, want %q in it", err, f)
		}
	}
}
