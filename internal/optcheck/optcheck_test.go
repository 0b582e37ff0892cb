package optcheck

import (
	"testing"
	"time"
)

func TestWording(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string // "" for no error
	}{
		{NotNegative("tcp", "MaxConns", 0), ""},
		{NotNegative("tcp", "MaxConns", -1), "velo: tcp: negative MaxConns -1"},
		{NotNegative("", "DialTimeout", -time.Second), "velo: negative DialTimeout -1s"},
		{AtMost("nats", "Window", 8, 8, "why"), ""},
		{AtMost("nats", "Window", 9, 8, "the most a message carries"), "velo: nats: Window 9 is over 8, the most a message carries"},
		{Errorf("uds", "Path %q", "x"), `velo: uds: Path "x"`},
	} {
		got := ""
		if tc.err != nil {
			got = tc.err.Error()
		}
		if got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
