// Package uds carries velo frames over Unix domain sockets, for instances
// on the same host: the same framing and write coalescing as TCP
// (transport/stream), without the TCP/IP stack.
//
// The address is the socket's path. By default each transport listens on
// a path of its own under os.TempDir(), removed on Close. Add this
// transport before TCP so that peers on the same host are reached over
// the socket: the messenger tries transports in the order added, Dial
// fails at once when the socket does not exist on this host, and the
// handshake checks that whoever listens there is the instance that was
// meant (a path alone proves nothing), so a peer on another host, or a
// stale path now used by someone else, falls over to the next transport.
package uds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "uds"

// maxPathLen is the longest socket path the kernel takes (sun_path less
// its terminating NUL on Linux; macOS allows 103).
const maxPathLen = 107

// Options configure the transport. The zero value means defaults.
type Options struct {
	// Path is the socket to listen on. Empty: a path unique to this
	// transport under os.TempDir() ("velo-<pid>-<random>.sock"). A socket
	// file left at Path by a process that is gone is replaced; one that
	// still answers is not (Listen fails).
	Path string
	// Mode is the permission of the socket file; connecting needs write
	// permission. Zero: 0600 (only the user that runs the instance).
	Mode fs.FileMode
	// DialTimeout bounds one connection attempt. Zero: 5 s.
	DialTimeout time.Duration
	// MaxFrame is the largest frame accepted, in bytes. Zero: 16 MiB.
	MaxFrame int
	// MaxConns bounds the accepted connections open at once; further ones
	// are closed at once. Zero: 4096.
	MaxConns int
	// ReadBuffer is the per-connection receive buffer, in bytes. Zero: 64 KiB.
	ReadBuffer int
	// Logger receives the listener's failed accepts (too many open
	// files...), at Warn and at most one line a second. Nil: the
	// messenger's logger.
	Logger *slog.Logger
}

// Transport is the Unix domain socket transport.
type Transport struct {
	opts  Options
	group *stream.Group

	mu     sync.Mutex
	closed bool              // guarded by mu
	logs   transport.LogSlot // the messenger's logger, for a nil Options.Logger
}

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Logged    = (*Transport)(nil)
)

// New returns a UDS transport. Nothing is opened until Listen.
func New(opts Options) *Transport {
	if opts.Mode == 0 {
		opts.Mode = 0o600
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 4096
	}
	return &Transport{
		opts:  opts,
		group: stream.NewGroup(stream.Options{MaxFrame: opts.MaxFrame, ReadBuffer: opts.ReadBuffer}),
	}
}

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// MaxFrame implements transport.Transport.
func (t *Transport) MaxFrame() int { return t.group.MaxFrame() }

// Available reports whether addr is a Unix socket on this host. It says
// nothing of who listens there: the handshake checks that.
func Available(addr string) bool {
	fi, err := os.Stat(addr)
	return err == nil && fi.Mode()&fs.ModeSocket != 0
}

// Local reports whether addr is a socket on this host, so that a
// messenger may prefer this transport for the peer (see
// docs/transports.md, "Selection"). It is Available as a method.
func (t *Transport) Local(addr string) bool { return Available(addr) }

// DefaultPath returns a new socket path under os.TempDir(), unique to
// this process and call.
func DefaultPath() (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("velo-%d-%s.sock", os.Getpid(), hex.EncodeToString(r[:]))), nil
}

// Listen implements transport.Transport.
func (t *Transport) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	path := t.opts.Path
	if path == "" {
		p, err := DefaultPath()
		if err != nil {
			return "", fmt.Errorf("uds: socket path: %w", err)
		}
		path = p
	}
	if len(path) > maxPathLen {
		return "", fmt.Errorf("uds: socket path of %d bytes is longer than the %d a socket address holds: %s", len(path), maxPathLen, path)
	}
	if err := removeStale(ctx, path); err != nil {
		return "", err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("uds: listen on %s: %w", path, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(true) // Close removes the socket file
	if err := os.Chmod(path, t.opts.Mode); err != nil {
		ul.Close()
		return "", fmt.Errorf("uds: %w", err)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ul.Close()
		return "", transport.ErrClosed
	}
	t.mu.Unlock()
	if err := t.group.Accept(ul, bind, t.opts.MaxConns, t.logger()); err != nil {
		return "", err
	}
	return path, nil
}

// SetLogger implements transport.Logged: the transport logs to l when
// Options.Logger is nil.
func (t *Transport) SetLogger(l *slog.Logger) { t.logs.Set(l) }

// logger is where the transport logs: Options.Logger, else SetLogger's;
// nil for nowhere.
func (t *Transport) logger() *slog.Logger { return t.logs.For(t.opts.Logger, Name) }

// removeStale removes a socket file at path that nobody answers on, as a
// crashed instance leaves behind. Anything else at path is left alone:
// another file kind makes Listen fail, a live socket too.
func removeStale(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("uds: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("uds: %s exists and is not a socket", path)
	}
	d := net.Dialer{Timeout: time.Second}
	nc, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		nc.Close()
		return fmt.Errorf("uds: %s is in use by a running process", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("uds: probing %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("uds: removing the stale socket %s: %w", path, err)
	}
	return nil
}

// Dial implements transport.Transport. A path that is no socket on this
// host fails at once, so that the messenger moves on to the next
// transport without waiting.
func (t *Transport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	if !Available(addr) {
		return nil, fmt.Errorf("uds: dial %s: %w", addr, errNoSocket)
	}
	d := net.Dialer{Timeout: t.opts.DialTimeout}
	nc, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, fmt.Errorf("uds: %w", err)
	}
	c, err := t.group.Serve(nc, bind)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// errNoSocket says that a dialed path is no socket on this host.
var errNoSocket = fmt.Errorf("no socket on this host: %w", fs.ErrNotExist)

// Close implements transport.Transport: it stops listening, removes the
// socket file, and closes every connection.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	return t.group.Close() // closes the listener, which unlinks the path
}
