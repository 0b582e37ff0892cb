// Package rawio reads and writes sockets with raw non-blocking system
// calls, so that request-response traffic does not wake the Go runtime's
// sysmon thread on every round trip (see docs/decisions.md).
package rawio

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// rawMax bounds the bytes moved by one raw system call. A raw call keeps
// its P for its whole duration, unseen by the scheduler, so it must stay
// short: larger reads and writes go through the net.Conn, whose system
// calls let the scheduler hand the P to other goroutines if they take long.
const rawMax = 256 << 10

// rawIO reads and writes a socket with raw system calls, through the
// socket's syscall.RawConn, so the netpoller still does the waiting.
//
// A Go system call (syscall.Syscall, what net.Conn uses) tells the
// scheduler it is entering the kernel. On a process that was idle, this
// wakes the sysmon thread from its deep sleep, and sysmon then polls every
// 20 µs for a while: on a machine with few CPUs, each of those wake-ups
// preempts the goroutines that do the work. Request-response traffic is
// exactly the pattern that triggers it on every round trip: a ping-pong
// that used raw calls measured a p50 of 23 µs against 37–64 µs through
// net.Conn, on the same machine. The sockets are non-blocking, so a raw
// call never waits in the kernel: it copies what fits and returns EAGAIN
// when there is nothing to do, and only then does the netpoller park the
// goroutine. See docs/decisions.md.
//
// Reads happen on the receive goroutine only, and writes under the
// flusher's turn only, so each direction's state can live in the struct
// (and the callbacks be made once, with no allocation per call).
type rawIO struct {
	net.Conn
	rc syscall.RawConn

	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	wtry    bool // TryWrite: give up at EAGAIN instead of waiting
	writeFn func(fd uintptr) bool
	// written counts the bytes written, updated by every system call, so
	// that another goroutine can tell a slow write from a stuck one.
	written atomic.Uint64
}

// Wrap returns nc with raw Read and Write if it is a TCP or Unix socket,
// else nc itself. VELO_RAW_IO=0 in the environment turns it off. The
// returned conn allows one Read and one Write at a time (concurrent with
// each other), which is how velo's connections use it.
func Wrap(nc net.Conn) net.Conn {
	if os.Getenv("VELO_RAW_IO") == "0" {
		return nc
	}
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nc
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return nc
	}
	r := &rawIO{Conn: nc, rc: rc}
	r.readFn = r.read
	r.writeFn = r.write
	return r
}

func (r *rawIO) read(fd uintptr) bool {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rbuf[0])), uintptr(len(r.rbuf)))
	if errno == syscall.EAGAIN {
		return false // let the netpoller wait for data
	}
	if errno == syscall.EINTR {
		return r.read(fd)
	}
	r.rn, r.rerrno = int(n), errno
	return true
}

func (r *rawIO) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) > rawMax {
		b = b[:rawMax] // a short read; the caller reads on
	}
	r.rbuf, r.rn, r.rerrno = b, 0, 0
	err := r.rc.Read(r.readFn)
	r.rbuf = nil
	if err == nil && r.rerrno != 0 {
		err = os.NewSyscallError("read", r.rerrno)
	}
	switch {
	case err != nil:
		return 0, r.opError("read", err)
	case r.rn == 0:
		return 0, io.EOF
	}
	raceWrite(b[:r.rn])
	return r.rn, nil
}

func (r *rawIO) write(fd uintptr) bool {
	for r.wn < len(r.wbuf) {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.wbuf[r.wn])), uintptr(len(r.wbuf)-r.wn))
		switch errno {
		case 0:
			r.wn += int(n)
			r.written.Add(uint64(n))
		case syscall.EAGAIN:
			// The send buffer is full: wait until it drains, unless the
			// caller only tries.
			return r.wtry
		case syscall.EINTR:
		default:
			r.werrno = errno
			return true
		}
	}
	return true
}

func (r *rawIO) Write(b []byte) (int, error) {
	if len(b) > rawMax {
		return r.Conn.Write(b)
	}
	if len(b) == 0 {
		return 0, nil
	}
	raceRead(b)
	r.wbuf, r.wn, r.werrno = b, 0, 0
	err := r.rc.Write(r.writeFn)
	r.wbuf = nil
	if err == nil && r.werrno != 0 {
		err = os.NewSyscallError("write", r.werrno)
	}
	if err != nil {
		return r.wn, r.opError("write", err)
	}
	return r.wn, nil
}

// TryWrite writes what of b fits into the socket's send buffer now (at
// most rawMax bytes) and returns at once: n < len(b) with a nil error
// means the buffer is full. It never waits, so a caller can hand the rest
// to a goroutine that may.
func (r *rawIO) TryWrite(b []byte) (int, error) {
	if len(b) > rawMax {
		b = b[:rawMax]
	}
	if len(b) == 0 {
		return 0, nil
	}
	raceRead(b)
	r.wbuf, r.wn, r.werrno, r.wtry = b, 0, 0, true
	err := r.rc.Write(r.writeFn)
	r.wbuf, r.wtry = nil, false
	if err == nil && r.werrno != 0 {
		err = os.NewSyscallError("write", r.werrno)
	}
	if err != nil {
		return r.wn, r.opError("write", err)
	}
	return r.wn, nil
}

// Written is the number of bytes written so far; it may be read while a
// write is in progress.
func (r *rawIO) Written() uint64 { return r.written.Load() }

// opError wraps err the way net.Conn's own methods do.
func (r *rawIO) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: r.LocalAddr().Network(), Source: r.LocalAddr(), Addr: r.RemoteAddr(), Err: err}
}
