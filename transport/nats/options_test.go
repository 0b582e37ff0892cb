package nats_test

import (
	"strings"
	"testing"
	"time"

	velonats "github.com/velo-messenger/velo/transport/nats"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts velonats.Options
		want string // "" for valid options; else a part of the error
	}{
		{"zero", velonats.Options{}, ""},
		{"largest window", velonats.Options{Window: velonats.MaxWindow}, ""},
		{"negative dial timeout", velonats.Options{DialTimeout: -time.Second}, "velo: nats: negative DialTimeout -1s"},
		{"negative max frame", velonats.Options{MaxFrame: -1}, "velo: nats: negative MaxFrame -1"},
		{"negative window", velonats.Options{Window: -8}, "velo: nats: negative Window -8"},
		{"window too large", velonats.Options{Window: velonats.MaxWindow + 1}, "velo: nats: Window 2147483648 is over 2147483647"},
		{"negative max conns", velonats.Options{MaxConns: -3}, "velo: nats: negative MaxConns -3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			transporttest.CheckOptions(t, velonats.New(tc.opts), tc.want)
		})
	}
}
