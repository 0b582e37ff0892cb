package velo_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/events"
	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

// Build refuses options that are wrong, each with an error that names the
// field and the value, and starts nothing.
func TestBuildRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   velo.Options
		events events.Options
		want   string
	}{
		{"negative keepalive interval", velo.Options{KeepaliveInterval: -time.Second}, events.Options{},
			"velo: negative KeepaliveInterval -1s"},
		{"negative dial timeout", velo.Options{DialTimeout: -time.Millisecond}, events.Options{},
			"velo: negative DialTimeout -1ms"},
		{"negative calls in flight", velo.Options{MaxCallsInFlight: -2}, events.Options{},
			"velo: negative MaxCallsInFlight -2"},
		{"too many headers", velo.Options{MaxHeaders: 1 << 16}, events.Options{},
			"velo: MaxHeaders 65536 is over 65535"},
		{"keepalive timeout below the interval", velo.Options{KeepaliveInterval: 3 * time.Second, KeepaliveTimeout: time.Second}, events.Options{},
			"velo: KeepaliveTimeout 1s does not exceed KeepaliveInterval 3s"},
		{"keepalive interval past the default timeout", velo.Options{KeepaliveInterval: 10 * time.Second}, events.Options{},
			"velo: KeepaliveTimeout 7s (the default) does not exceed KeepaliveInterval 10s"},
		{"backoff past the default maximum", velo.Options{ReconnectBackoff: 10 * time.Second}, events.Options{},
			"velo: MaxReconnectBackoff 5s (the default) is below ReconnectBackoff 10s"},
		{"negative eject bound", velo.Options{EjectAfter: -time.Second}, events.Options{},
			"velo: negative EjectAfter -1s"},
		{"eject bound past the keepalive timeout", velo.Options{EjectAfter: 8 * time.Second}, events.Options{},
			"velo: EjectAfter 8s is not below KeepaliveTimeout 7s (the default)"},
		{"negative retry attempts", velo.Options{Retry: velo.RetryPolicy{Attempts: -1}}, events.Options{},
			"velo: negative Retry.Attempts -1"},
		{"negative retry backoff", velo.Options{Retry: velo.RetryPolicy{Backoff: -time.Millisecond}}, events.Options{},
			"velo: negative Retry.Backoff -1ms"},
		{"negative retry ratio", velo.Options{RetryBudget: velo.RetryBudget{Ratio: -0.5}}, events.Options{},
			"velo: negative RetryBudget.Ratio -0.5"},
		{"negative event cache", velo.Options{}, events.Options{CacheSize: -1},
			"velo: events: negative CacheSize -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.events == (events.Options{}) {
				if err := tc.opts.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Options.Validate = %v, want %q", err, tc.want)
				}
			}
			m, err := velo.NewBuilder().
				AddTransport(mem.New(mem.NewNetwork())).
				Options(tc.opts).
				EventOptions(tc.events).
				Build(context.Background())
			if err == nil {
				m.Shutdown(context.Background())
				t.Fatalf("Build succeeded, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build = %v, want %q", err, tc.want)
			}
		})
	}
}

// A transport with a bad option makes Build fail with the transport's
// error before any transport listens: the UDS transport added first has
// created no socket.
func TestBuildRefusesBadTransportOption(t *testing.T) {
	dir, err := os.MkdirTemp("", "velo")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s.sock")
	m, err := velo.NewBuilder().
		AddTransport(uds.New(uds.Options{Path: sock})).
		AddTransport(tcp.New(tcp.Options{MaxConns: -1})).
		Build(context.Background())
	if err == nil {
		m.Shutdown(context.Background())
		t.Fatal("Build succeeded with tcp MaxConns -1")
	}
	if want := "velo: tcp: negative MaxConns -1"; err.Error() != want {
		t.Errorf("Build = %q, want %q", err, want)
	}
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the UDS transport listened before Build refused: stat = %v", err)
	}
}

// The defaults satisfy their own rules.
func TestDefaultOptionsAreValid(t *testing.T) {
	if err := (velo.Options{}).Validate(); err != nil {
		t.Fatal(err)
	}
	o := velo.Options{
		KeepaliveInterval:   velo.DefaultKeepaliveInterval,
		KeepaliveTimeout:    velo.DefaultKeepaliveTimeout,
		ReconnectBackoff:    velo.DefaultReconnectBackoff,
		MaxReconnectBackoff: velo.DefaultMaxReconnectBackoff,
		MaxHeaders:          velo.DefaultMaxHeaders,
		MaxHeaderBytes:      velo.DefaultMaxHeaderBytes,
		MaxCallsInFlight:    velo.DefaultMaxCallsInFlight,
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
}
