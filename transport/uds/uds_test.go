package uds_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/uds"
)

// nopHandler accepts frames and ignores them.
type nopHandler struct{}

func (nopHandler) HandleFrame([]byte) error { return nil }
func (nopHandler) Closed(error)             {}

func nopBind(transport.Conn) transport.Handler { return nopHandler{} }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDefaultPathIsRemovedOnClose(t *testing.T) {
	tr := uds.New(uds.Options{})
	addr, err := tr.Listen(testCtx(t), nopBind)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, os.TempDir()) || !uds.Available(addr) {
		t.Fatalf("listening at %q: want a socket under %s", addr, os.TempDir())
	}
	fi, err := os.Stat(addr)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %v, want 0600", perm)
	}
	other := uds.New(uds.Options{})
	addr2, err := other.Listen(testCtx(t), nopBind)
	if err != nil {
		t.Fatal(err)
	}
	if addr2 == addr {
		t.Errorf("two transports got the same default path %q", addr)
	}
	other.Close()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr.Close() // idempotent
	if _, err := os.Stat(addr); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close: %v, want it gone", err)
	}
	if uds.Available(addr) {
		t.Error("Available after Close")
	}
}

func TestDialMissingSocketFailsAtOnce(t *testing.T) {
	tr := uds.New(uds.Options{})
	defer tr.Close()
	missing := filepath.Join(t.TempDir(), "nobody.sock")
	start := time.Now()
	_, err := tr.Dial(testCtx(t), missing, nopBind)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Dial of a missing socket: %v, want an error matching fs.ErrNotExist", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Dial of a missing socket took %v", d)
	}
	// A regular file is no socket either.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if uds.Available(file) {
		t.Error("Available(regular file) = true")
	}
	if _, err := tr.Dial(testCtx(t), file, nopBind); err == nil {
		t.Error("Dial of a regular file succeeded")
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	// A socket file nobody listens on, as a crashed process leaves it.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if !uds.Available(path) {
		t.Fatal("the stale socket file is not there")
	}
	tr := uds.New(uds.Options{Path: path})
	defer tr.Close()
	if _, err := tr.Listen(testCtx(t), nopBind); err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	// A live socket is not taken over.
	tr2 := uds.New(uds.Options{Path: path})
	defer tr2.Close()
	if _, err := tr2.Listen(testCtx(t), nopBind); err == nil {
		t.Fatal("Listen over a live socket succeeded")
	}
	if !uds.Available(path) {
		t.Error("the failed Listen removed the live socket")
	}
	// Nor is a file that is no socket.
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, []byte("data"), 0o600)
	tr3 := uds.New(uds.Options{Path: file})
	defer tr3.Close()
	if _, err := tr3.Listen(testCtx(t), nopBind); err == nil {
		t.Error("Listen over a regular file succeeded")
	}
	if b, _ := os.ReadFile(file); string(b) != "data" {
		t.Error("the regular file was changed")
	}
}

func TestPathTooLong(t *testing.T) {
	tr := uds.New(uds.Options{Path: "/tmp/" + strings.Repeat("x", 200)})
	defer tr.Close()
	if _, err := tr.Listen(testCtx(t), nopBind); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("Listen with a 205-byte path: %v, want a clear error", err)
	}
}

func TestListenAfterClose(t *testing.T) {
	tr := uds.New(uds.Options{})
	tr.Close()
	if _, err := tr.Listen(testCtx(t), nopBind); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Listen after Close: %v, want ErrClosed", err)
	}
}
