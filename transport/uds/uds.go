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

	"github.com/velo-messenger/velo/internal/optcheck"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/stream"
)

// Name is the transport's key in peer.Info.Addresses.
const Name = "uds"

// maxPathLen is the longest socket path the kernel takes (sun_path less
// its terminating NUL on Linux; macOS allows 103).
const maxPathLen = 107

// Defaults applied to the zero fields of Options.
const (
	// DefaultMode is the permission of the socket file: only the user
	// that runs the instance may connect.
	DefaultMode fs.FileMode = 0o600
	// DefaultDialTimeout bounds one connection attempt.
	DefaultDialTimeout = 5 * time.Second
	// DefaultMaxFrame is the largest frame accepted, in bytes: 16 MiB.
	DefaultMaxFrame = stream.DefaultMaxFrame
	// DefaultMaxConns bounds the accepted connections open at once.
	DefaultMaxConns = 4096
	// DefaultReadBuffer is the per-connection receive buffer, in bytes:
	// 64 KiB.
	DefaultReadBuffer = stream.DefaultReadBuffer
)

// Options configure the transport. The zero value of each field means its
// default; Validate reports the values that are wrong.
type Options struct {
	// Path is the socket to listen on, at most 107 bytes long. Empty: a
	// path unique to this transport under os.TempDir()
	// ("velo-<pid>-<random>.sock", see DefaultPath). A socket file left
	// at Path by a process that is gone is replaced; one that still
	// answers is not (Listen fails).
	Path string
	// Mode is the permission of the socket file (permission bits only);
	// connecting needs write permission. Zero: DefaultMode (0600).
	Mode fs.FileMode
	// DialTimeout bounds one connection attempt. Zero: DefaultDialTimeout
	// (5 s).
	DialTimeout time.Duration
	// MaxFrame is the largest frame accepted, in bytes. Zero:
	// DefaultMaxFrame (16 MiB).
	MaxFrame int
	// MaxConns bounds the accepted connections open at once; further ones
	// are closed at once. Zero: DefaultMaxConns (4096).
	MaxConns int
	// ReadBuffer is the per-connection receive buffer, in bytes. Zero:
	// DefaultReadBuffer (64 KiB).
	ReadBuffer int
	// Logger receives the listener's failed accepts (too many open
	// files...), at Warn and at most one line a second. Nil: the
	// messenger's logger.
	Logger *slog.Logger
}

// Validate reports every field that no default stands in for, naming the
// field and its value ("velo: uds: negative MaxConns -1").
func (o Options) Validate() error {
	var mode, path error
	if o.Mode&^fs.ModePerm != 0 {
		mode = optcheck.Errorf(Name, "Mode %#o has bits other than permissions (0777)", uint32(o.Mode))
	}
	if len(o.Path) > maxPathLen {
		path = optcheck.Errorf(Name, "Path of %d bytes is longer than the %d a socket address holds: %s", len(o.Path), maxPathLen, o.Path)
	}
	return errors.Join(
		path,
		mode,
		optcheck.NotNegative(Name, "DialTimeout", o.DialTimeout),
		optcheck.NotNegative(Name, "MaxFrame", o.MaxFrame),
		optcheck.NotNegative(Name, "MaxConns", o.MaxConns),
		optcheck.NotNegative(Name, "ReadBuffer", o.ReadBuffer),
	)
}

// withDefaults fills the zero fields of options that Validate accepted,
// but Path: Listen draws a new one.
func (o Options) withDefaults() Options {
	if o.Mode == 0 {
		o.Mode = DefaultMode
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.ReadBuffer == 0 {
		o.ReadBuffer = DefaultReadBuffer
	}
	return o
}

// Transport is the Unix domain socket transport.
type Transport struct {
	opts   Options
	optErr error // Options.Validate's; Listen and Dial return it
	group  *stream.Group

	mu     sync.Mutex
	closed bool              // guarded by mu
	logs   transport.LogSlot // the messenger's logger, for a nil Options.Logger
}

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Logged    = (*Transport)(nil)
	_ transport.Validator = (*Transport)(nil)
)

// New returns a UDS transport. Nothing is opened until Listen. Invalid
// options are reported by Validate (the messenger's Build calls it), and
// by Listen and Dial.
func New(opts Options) *Transport {
	err := opts.Validate()
	if err != nil {
		opts = Options{Logger: opts.Logger} // never listens nor dials
	}
	opts = opts.withDefaults()
	return &Transport{
		opts:   opts,
		optErr: err,
		group:  stream.NewGroup(stream.Options{MaxFrame: opts.MaxFrame, ReadBuffer: opts.ReadBuffer, CallerReads: true}),
	}
}

// Validate implements transport.Validator: the error of Options.Validate.
func (t *Transport) Validate() error { return t.optErr }

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
	if t.optErr != nil {
		return "", t.optErr
	}
	path := t.opts.Path
	if path == "" {
		p, err := DefaultPath()
		if err != nil {
			return "", fmt.Errorf("uds: socket path: %w", err)
		}
		path = p
	}
	if len(path) > maxPathLen { // a long os.TempDir(): Validate saw no Path
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
	if t.optErr != nil {
		return nil, t.optErr
	}
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
