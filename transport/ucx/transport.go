//go:build ucx && cgo

package ucx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// Available reports whether this binary was built with UCX.
const Available = true

// Transport is the UCX transport. Make one with New.
type Transport struct {
	o          Options
	peerErrors bool
	log        transport.LogSlot

	w  *worker
	rc syscall.RawConn // the worker's event fd in the netpoller
	ef *os.File

	mu       sync.Mutex
	ops      []op // guarded by mu: work for the owner, in order
	closed   bool // guarded by mu
	started  bool // guarded by mu: the owner runs
	ownerEnd bool // guarded by mu: the owner returned; nothing more is done
	accepted int  // guarded by mu: accepted connections open
	addr     string

	parked atomic.Bool // the owner sleeps on the event fd: wake it with signal
	stop   atomic.Bool
	wg     sync.WaitGroup // the owner and the connections' goroutines
	ownerg sync.WaitGroup // the owner alone

	bind transport.Binder

	// The owner's own state.
	conns   map[uint64]*conn // by id
	byEP    map[uint64]*conn // by endpoint
	pending map[uint64]time.Time
	pulls   map[uint64]*pull
	zcs     map[uint64]*zcSend // sends of the writer's own buffer in flight, by token
	token   uint64
	closing []closingEP
	batch   []send
	evs     []event // the events of one progress call, copied out of C
	errs    []error
	done    []bool
	cur     []op
}

// op is a piece of work for the owner goroutine.
type op struct {
	kind  opKind
	c     *conn
	buf   cbuf    // opSend
	zc    *zcSend // opSend of the writer's own buffer (buf is pinned Go memory)
	hdr   header  // opSend: type and value; the owner adds the ids
	ip    string  // opDial
	port  int
	force bool // opCloseEP
}

type opKind uint8

const (
	opSend opKind = iota + 1
	opDial
	opCloseEP
)

// zcSend is a large frame sent from the writer's own buffer, pinned until
// UCX is done with it; WriteFrame waits for done.
type zcSend struct {
	pin  runtime.Pinner
	done chan struct{}
	err  error
}

// finish ends a zcSend with err (nil: sent).
func (z *zcSend) finish(err error) {
	z.pin.Unpin()
	z.err = err
	close(z.done)
}

// drop releases an op that will not run.
func (o *op) drop() {
	switch {
	case o.zc != nil:
		o.zc.finish(transport.ErrClosed)
	case o.kind == opSend:
		o.buf.free()
	}
}

// pull is a rendezvous receive in flight.
type pull struct {
	c     *conn
	seq   uint64
	buf   []byte
	batch bool // a batch message of count frames
	count int
	pin   runtime.Pinner
}

func (p *pull) deliver() {
	if p.batch {
		p.c.readyBatch(p.seq, p.buf, p.count)
	} else {
		p.c.ready(p.seq, p.buf)
	}
}

// closingEP is an endpoint whose flush-and-close is under way.
type closingEP struct {
	req      uint64
	deadline time.Time
}

// The owner's sleep on the event fd lasts at most as long as it had been
// idle before, within these bounds: a wake-up that UCX misses (see sleep)
// delays traffic by 1 ms at most while there is some, and an idle
// transport wakes 20 times a second.
const (
	minWake = time.Millisecond
	maxWake = 50 * time.Millisecond
)

// closeGrace is how long Close waits for the endpoints' close requests
// (the peers told, the frames queued flushed) before it destroys the
// worker regardless.
const closeGrace = 2 * time.Second

var (
	_ transport.Transport = (*Transport)(nil)
	_ transport.Validator = (*Transport)(nil)
	_ transport.Logged    = (*Transport)(nil)
)

// New returns a transport with the given options and its UCX worker. It
// fails when UCX cannot start (an unknown name in Transports, no usable
// device): the error says why.
func New(o Options) (*Transport, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	tls := o.Transports
	if tls == "" && os.Getenv("UCX_TLS") == "" {
		tls = DefaultTransports
	}
	effective := tls
	if effective == "" {
		effective = os.Getenv("UCX_TLS")
	}
	if !hasTCP(effective) {
		return nil, fmt.Errorf("velo: ucx: Transports %q has no tcp: UCX needs it to connect by address (try %q)", effective, SharedMemory)
	}
	t := &Transport{
		o:          o,
		peerErrors: strings.TrimSpace(effective) == "tcp",
		conns:      make(map[uint64]*conn),
		byEP:       make(map[uint64]*conn),
		pending:    make(map[uint64]time.Time),
		pulls:      make(map[uint64]*pull),
		zcs:        make(map[uint64]*zcSend),
	}
	w, err := openWorker(tls, o.NetDevices, t.peerErrors)
	if err != nil {
		return nil, err
	}
	t.w = w
	fd, err := syscall.Dup(w.efd())
	if err == nil {
		err = syscall.SetNonblock(fd, true)
	}
	if err != nil {
		w.close()
		return nil, fmt.Errorf("velo: ucx: event fd: %w", err)
	}
	t.ef = os.NewFile(uintptr(fd), "ucx-worker")
	if t.rc, err = t.ef.SyscallConn(); err != nil {
		t.ef.Close()
		w.close()
		return nil, fmt.Errorf("velo: ucx: event fd: %w", err)
	}
	return t, nil
}

func hasTCP(tls string) bool {
	for _, s := range strings.Split(tls, ",") {
		if s = strings.TrimSpace(s); s == "tcp" || s == "all" {
			return true
		}
	}
	return false
}

// Validate implements transport.Validator.
func (t *Transport) Validate() error { return t.o.Validate() }

// SetLogger implements transport.Logged.
func (t *Transport) SetLogger(l *slog.Logger) { t.log.Set(l) }

// Name implements transport.Transport.
func (t *Transport) Name() string { return Name }

// MaxFrame implements transport.Transport.
func (t *Transport) MaxFrame() int { return t.o.MaxFrame }

// Listen implements transport.Transport.
func (t *Transport) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	ip, port, err := splitAddr(t.o.Listen)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return "", transport.ErrClosed
	}
	if t.started {
		return "", errors.New("velo: ucx: Listen called twice")
	}
	bound, err := t.w.listen(ip, port)
	if err != nil {
		return "", fmt.Errorf("velo: ucx: listen on %s: %w", t.o.Listen, err)
	}
	t.bind = bind
	t.addr = net.JoinHostPort(ip, strconv.Itoa(bound))
	if t.o.Advertise != "" {
		t.addr = t.o.Advertise
	}
	t.start()
	return t.addr, nil
}

// start runs the owner. Called with mu held.
func (t *Transport) start() {
	if t.started {
		return
	}
	t.started = true
	t.wg.Add(1)
	t.ownerg.Add(1)
	go t.own()
}

// splitAddr parses IP:port; a host name is resolved to its first address.
func splitAddr(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("velo: ucx: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("velo: ucx: address %q: bad port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		ips, err := net.LookupHost(host)
		if err != nil || len(ips) == 0 {
			return "", 0, fmt.Errorf("velo: ucx: address %q: %v", addr, err)
		}
		host = ips[0]
	}
	return host, port, nil
}

// Dial implements transport.Transport. It creates an endpoint to addr,
// says open, and waits for the listener's accept.
func (t *Transport) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	if err := t.o.Validate(); err != nil {
		return nil, err
	}
	ip, port, err := splitAddr(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.o.DialTimeout)
	defer cancel()
	c := newConn(t, addr, false)
	if err := t.enqueue(op{kind: opDial, c: c, ip: ip, port: port}); err != nil {
		return nil, err
	}
	select {
	case <-c.opened.ch:
	case <-ctx.Done():
		err := fmt.Errorf("velo: ucx: dial %s: %w", addr, ctx.Err())
		c.Close(err)
		return nil, err
	}
	c.mu.Lock()
	err = c.err
	c.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("velo: ucx: dial %s: %w", addr, err)
	}
	c.h = bind(c)
	t.wg.Add(1)
	go c.run()
	return c, nil
}

// enqueue hands op to the owner, waking it if it sleeps.
func (t *Transport) enqueue(o op) error {
	t.mu.Lock()
	if t.ownerEnd || t.closed && !t.started {
		t.mu.Unlock()
		o.drop()
		return transport.ErrClosed
	}
	if !t.started {
		t.start()
	}
	t.ops = append(t.ops, o)
	t.mu.Unlock()
	t.wake()
	return nil
}

func (t *Transport) wake() {
	if t.parked.Load() && t.parked.CompareAndSwap(true, false) {
		t.w.signal()
	}
}

// Close implements transport.Transport: every connection is closed (its
// peer told), the owner stops once the endpoints are flushed or
// closeGrace has passed, and the worker is destroyed.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	started := t.started
	t.mu.Unlock()
	if started {
		// The owner closes every connection it knows and stops.
		t.stop.Store(true)
		t.parked.Store(false)
		t.w.signal()
		t.ownerg.Wait()
	}
	t.wg.Wait()
	t.ef.Close()
	t.w.close()
	// UCX is gone: the buffers of the sends it did not finish are free.
	for tok, z := range t.zcs {
		delete(t.zcs, tok)
		z.finish(transport.ErrClosed)
	}
	return nil
}

// logf logs at Debug what the transport noticed about a peer.
func (t *Transport) logf(msg string, args ...any) {
	if l := t.log.For(t.o.Logger, Name); l != nil {
		l.Debug(msg, args...)
	}
}

// own is the owner goroutine: it runs queued work, progresses the worker,
// acts on what UCX reports, and sleeps on the event fd when idle.
func (t *Transport) own() {
	defer t.wg.Done()
	defer t.ownerg.Done()
	consumed := 0
	last := time.Now()
	stopping := false
	var stopAt time.Time
	for {
		worked := t.runOps()
		// The events are copied out first: a UCX call made while handling
		// one (an endpoint closed, a pull started) may list more, and the
		// list may move when it grows.
		cevs := t.w.progress(consumed)
		consumed = len(cevs)
		t.evs = append(t.evs[:0], cevs...)
		for i := range t.evs {
			t.handle(&t.evs[i])
		}
		t.flushSends() // what handling queued (credit from handleDirect, accepts)
		if len(t.evs) > 0 || worked {
			last = time.Time{}
		}
		t.reapClosing(false)
		if !stopping && t.stop.Load() {
			stopping = true
			stopAt = time.Now().Add(closeGrace)
			t.shutdownConns()
			continue
		}
		if stopping {
			t.mu.Lock()
			idle := len(t.ops) == 0
			t.mu.Unlock()
			if idle && len(t.closing) == 0 || time.Now().After(stopAt) {
				t.mu.Lock()
				t.ownerEnd = true
				left := t.ops
				t.ops = nil
				t.mu.Unlock()
				for i := range left {
					left[i].drop()
				}
				t.reapClosing(true)
				t.failPulls()
				return
			}
			runtime.Gosched()
			continue
		}
		if len(t.evs) > 0 || worked {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			last = now
		}
		if t.o.Spin > 0 && now.Sub(last) < t.o.Spin {
			// Each turn of the spin lets the other goroutines run; with
			// one P (a process pinned to one CPU, say) it gives the CPU
			// to the other processes too, the peer among them when both
			// share that CPU.
			runtime.Gosched()
			if runtime.GOMAXPROCS(0) == 1 && !t.queued() {
				syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			}
			continue
		}
		t.sweepPending(now)
		// The longer the owner was idle, the longer it may sleep before
		// it looks without a wake-up (see idleWake).
		t.sleep(min(max(now.Sub(last), minWake), maxWake))
		last = time.Time{}
	}
}

// sleep parks the owner on the event fd until UCX or a sender signals,
// or at most for d.
func (t *Transport) sleep(d time.Duration) {
	t.parked.Store(true)
	if t.queued() || t.stop.Load() {
		t.parked.Store(false)
		return
	}
	// The event fd does not always become readable when UCX has work:
	// a connection request (3 dials in 300) and, over tcp, a message now
	// and then were seen to wait for the next unrelated event. The owner
	// looks again after d at the latest.
	t.ef.SetReadDeadline(time.Now().Add(d))
	first := true
	err := t.rc.Read(func(uintptr) bool {
		if !first {
			return true
		}
		first = false
		ok, err := t.w.arm()
		if err != nil || !ok {
			return true
		}
		return t.queued() || t.stop.Load()
	})
	t.parked.Store(false)
	if err != nil && !t.stop.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.logf("ucx: waiting on the event fd", "err", err)
		time.Sleep(time.Millisecond)
	}
}

// queued reports whether work waits for the owner.
func (t *Transport) queued() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ops) > 0
}

// runOps runs the queued work in order; it reports whether there was any.
func (t *Transport) runOps() bool {
	t.mu.Lock()
	ops := t.ops
	t.ops = t.cur[:0]
	t.mu.Unlock()
	if len(ops) == 0 {
		t.cur = ops
		return false
	}
	for i := 0; i < len(ops); i++ {
		o := &ops[i]
		if o.kind == opSend {
			if o.c.epGone || o.c.ep == 0 {
				o.drop()
				continue
			}
			h := o.hdr
			h.to, h.from = o.c.remoteID, o.c.id
			s := send{ep: o.c.ep, buf: o.buf, hdr: h}
			if k := coalescable(ops[i:]); k > 1 {
				s.buf, s.hdr.typ = packBatch(ops[i:i+k]), msgBatch|uint64(k)<<8
				i += k - 1
			}
			if o.zc != nil {
				t.token++
				s.token = t.token
				t.zcs[s.token] = o.zc
			}
			t.batch = append(t.batch, s)
			continue
		}
		t.flushSends()
		switch o.kind {
		case opDial:
			t.dial(o.c, o.ip, o.port)
		case opCloseEP:
			t.closeEP(o.c, o.force)
		}
	}
	t.flushSends()
	clear(ops)
	t.cur = ops[:0]
	return true
}

// coalescable counts the small data frames for one connection at the head
// of ops that one batch message can carry (1: send the first alone).
func coalescable(ops []op) int {
	first := &ops[0]
	if !first.small() {
		return 1
	}
	k, size := 1, batchEntry+first.buf.n
	for k < len(ops) && k < maxBatch {
		o := &ops[k]
		if o.c != first.c || !o.small() || size+batchEntry+o.buf.n > batchMax {
			break
		}
		size += batchEntry + o.buf.n
		k++
	}
	return k
}

func (o *op) small() bool {
	return o.kind == opSend && o.zc == nil && o.hdr.typ == msgData && o.buf.n <= batchMax-batchEntry
}

// packBatch copies the frames of ops into one buffer, each after its
// length (batchEntry bytes, little endian), and frees theirs.
func packBatch(ops []op) cbuf {
	n := 0
	for i := range ops {
		n += batchEntry + ops[i].buf.n
	}
	out := allocBufN(n)
	b := out.bytes()[:0]
	for i := range ops {
		b = appendBatchEntry(b, ops[i].buf.bytes())
		ops[i].buf.free()
	}
	return out
}

// flushSends hands the batched sends to UCX.
func (t *Transport) flushSends() {
	if len(t.batch) == 0 {
		return
	}
	if cap(t.errs) < len(t.batch) {
		t.errs = make([]error, len(t.batch))
		t.done = make([]bool, len(t.batch))
	}
	errs, done := t.errs[:len(t.batch)], t.done[:len(t.batch)]
	t.w.sendAll(t.batch, errs, done)
	for i, err := range errs {
		if tok := t.batch[i].token; tok != 0 && done[i] {
			t.zcs[tok].finish(err)
			delete(t.zcs, tok)
		}
		if err != nil {
			if c := t.byEP[t.batch[i].ep]; c != nil {
				c.Close(fmt.Errorf("velo: ucx: send: %w", err))
			}
		}
	}
	clear(errs)
	t.batch = t.batch[:0]
}

func (t *Transport) dial(c *conn, ip string, port int) {
	if c.isClosed() {
		c.opened.close()
		return
	}
	ep, err := t.w.dial(ip, port)
	if err != nil {
		c.fail(fmt.Errorf("connect: %w", err))
		return
	}
	c.ep = ep
	t.conns[c.id] = c
	t.byEP[ep] = c
	t.batch = append(t.batch, send{ep: ep, buf: allocBuf(nil), reply: true,
		hdr: header{typ: msgOpen, value: uint64(t.o.Window), from: c.id}})
}

// closeEP closes c's endpoint: flushed first (the close message the
// connection queued goes out), unless force.
func (t *Transport) closeEP(c *conn, force bool) {
	if c.epGone || c.ep == 0 {
		c.epGone = true
		return
	}
	c.epGone = true
	delete(t.conns, c.id)
	delete(t.byEP, c.ep)
	if c.accepted {
		t.mu.Lock()
		t.accepted--
		t.mu.Unlock()
	}
	if req := t.w.closeEP(c.ep, force); req != 0 {
		t.closing = append(t.closing, closingEP{req: req, deadline: time.Now().Add(closeGrace)})
	}
}

// reapClosing frees the close requests that finished; all, cancelled
// first, when final.
func (t *Transport) reapClosing(final bool) {
	if len(t.closing) == 0 {
		return
	}
	keep := t.closing[:0]
	for _, ce := range t.closing {
		if t.w.reqDone(ce.req) {
			continue
		}
		if final {
			t.w.reqCancel(ce.req)
			for range 100 {
				t.w.progress(0)
				if t.w.reqDone(ce.req) {
					break
				}
			}
			continue
		}
		keep = append(keep, ce)
	}
	t.closing = keep
}

// shutdownConns closes every connection, as Close does, and the endpoints
// that never said open.
func (t *Transport) shutdownConns() {
	for _, c := range t.conns {
		c.Close(transport.ErrClosed)
	}
	for ep := range t.pending {
		delete(t.pending, ep)
		if req := t.w.closeEP(ep, true); req != 0 {
			t.closing = append(t.closing, closingEP{req: req, deadline: time.Now().Add(closeGrace)})
		}
	}
	t.runOps()
}

// failPulls ends the rendezvous receives still in flight at shutdown.
func (t *Transport) failPulls() {
	for tok, p := range t.pulls {
		p.pin.Unpin()
		delete(t.pulls, tok)
	}
}

// sweepPending closes the endpoints that connected and never said open
// within DialTimeout.
func (t *Transport) sweepPending(now time.Time) {
	for ep, since := range t.pending {
		if now.Sub(since) > t.o.DialTimeout {
			delete(t.pending, ep)
			t.releaseAccepted()
			if req := t.w.closeEP(ep, true); req != 0 {
				t.closing = append(t.closing, closingEP{req: req, deadline: now.Add(closeGrace)})
			}
		}
	}
}

func (t *Transport) releaseAccepted() {
	t.mu.Lock()
	t.accepted--
	t.mu.Unlock()
}

// handle acts on one event.
func (t *Transport) handle(e *event) {
	switch e._type {
	case evRecv, evRndv:
		t.message(e)
	case evRndvDone:
		p := t.pulls[uint64(e.desc)]
		if p == nil {
			return
		}
		delete(t.pulls, uint64(e.desc))
		p.pin.Unpin()
		if e.status != 0 {
			p.c.Close(fmt.Errorf("velo: ucx: receiving a large frame: %w", status(e.status)))
			return
		}
		p.deliver()
	case evSendDone:
		tok := uint64(e.desc)
		if z := t.zcs[tok]; z != nil {
			delete(t.zcs, tok)
			var err error
			if e.status != 0 {
				err = fmt.Errorf("velo: ucx: send: %w", status(e.status))
			}
			z.finish(err)
		}
		if e.status != 0 && e.status != statusCanceled {
			if c := t.byEP[uint64(e.ep)]; c != nil {
				c.lost(fmt.Errorf("velo: ucx: peer lost: %w", status(e.status)))
			}
		}
	case evEpErr, evSendErr:
		ep := uint64(e.ep)
		if c := t.byEP[ep]; c != nil {
			c.lost(fmt.Errorf("velo: ucx: peer lost: %w", status(e.status)))
			return
		}
		if _, ok := t.pending[ep]; ok {
			delete(t.pending, ep)
			t.releaseAccepted()
			if req := t.w.closeEP(ep, true); req != 0 {
				t.closing = append(t.closing, closingEP{req: req, deadline: time.Now().Add(closeGrace)})
			}
		}
	case evConnReq:
		t.mu.Lock()
		full := t.accepted >= t.o.MaxConns || t.closed
		if !full {
			t.accepted++
		}
		t.mu.Unlock()
		if full {
			t.w.reject(uint64(e.desc))
			return
		}
		ep, err := t.w.accept(uint64(e.desc))
		if err != nil {
			t.releaseAccepted()
			t.logf("ucx: accepting a connection", "err", err)
			return
		}
		t.pending[ep] = time.Now()
	}
}

// message acts on a message (eager or announced for rendezvous).
func (t *Transport) message(e *event) {
	h := headerOf(e)
	kind := uint8(h.typ)
	rndv := e._type == evRndv
	if !rndv && kind != msgData && kind != msgClose && kind != msgBatch || t.conns[h.to] == nil || h.to == 0 {
		// The data is not used: free a copy made outside the arena.
		defer t.w.dropData(e)
	}
	c := t.conns[h.to]
	if c == nil || h.to == 0 {
		if kind == msgOpen && h.to == 0 && h.from != 0 {
			t.open(h, uint64(e.ep))
		} else {
			t.logf("ucx: a message for no connection", "type", kind)
		}
		if rndv {
			t.w.release(uint64(e.desc))
		}
		return
	}
	switch {
	case h.from != c.remoteID && !(kind == msgAccept && c.remoteID == 0):
		c.Close(fmt.Errorf("velo: ucx: a message from connection %x on the connection with %x", h.from, c.remoteID))
	case kind == msgData || kind == msgClose || kind == msgBatch:
		t.frame(c, e, h, rndv)
		return
	case kind == msgAccept:
		if !c.accepted && h.from != 0 {
			c.remoteID = h.from
			c.start(int(min(h.value, uint64(t.o.Window))))
		}
	case kind == msgWindow:
		c.grant(h.value)
	default:
		c.Close(fmt.Errorf("velo: ucx: unknown message type %d", kind))
	}
	if rndv {
		t.w.release(uint64(e.desc))
	}
}

// open accepts a connection whose endpoint said open.
func (t *Transport) open(h header, ep uint64) {
	if _, ok := t.pending[ep]; !ok {
		t.logf("ucx: open from an endpoint not accepted here")
		return
	}
	delete(t.pending, ep)
	c := newConn(t, "", true)
	c.ep = ep
	c.remoteID = h.from
	t.conns[c.id] = c
	t.byEP[ep] = c
	c.start(int(min(h.value, uint64(t.o.Window))))
	t.batch = append(t.batch, send{ep: ep, buf: allocBuf(nil),
		hdr: header{typ: msgAccept, value: uint64(t.o.Window), to: c.remoteID, from: c.id}})
	t.flushSends()
	t.wg.Add(1)
	go func() {
		c.h = t.bind(c)
		c.run()
	}()
}

// frame queues a data or close message on c, in sequence order; a large
// one is pulled into a buffer of its size once it is checked.
func (t *Transport) frame(c *conn, e *event, h header, rndv bool) {
	n := int(e.len)
	seq := h.value
	kind := uint8(h.typ)
	count := 1
	if kind == msgBatch {
		count = int(h.typ >> 8)
	}
	if err := c.admit(seq, n, kind == msgClose, count); err != nil {
		if rndv {
			t.w.release(uint64(e.desc))
		} else if e.flags != 0 {
			t.w.data(e) // frees the copy
		}
		if err != errDropped {
			t.logf("ucx: closing a connection on bad input", "err", err)
			c.Close(err)
		}
		return
	}
	if kind == msgClose {
		var reason string
		if rndv {
			t.w.release(uint64(e.desc))
			reason = "closed"
		} else {
			reason = string(t.w.data(e))
		}
		c.peerClosed(reason)
		return
	}
	if !rndv {
		f := t.w.data(e)
		switch {
		case kind == msgBatch:
			c.readyBatch(seq, f, count)
		case wire.FrameType(f) != wire.TypeResponse || !c.handleDirect(seq, f):
			c.ready(seq, f)
		}
		return
	}
	if n == 0 {
		t.w.release(uint64(e.desc))
		c.ready(seq, []byte{})
		return
	}
	buf := make([]byte, n)
	p := &pull{c: c, seq: seq, buf: buf, batch: kind == msgBatch, count: count}
	p.pin.Pin(&buf[0])
	t.token++
	done, err := t.w.pull(uint64(e.desc), buf, t.token)
	if err != nil {
		p.pin.Unpin()
		c.Close(fmt.Errorf("velo: ucx: receiving a large frame: %w", err))
		return
	}
	if done {
		p.pin.Unpin()
		p.deliver()
		return
	}
	t.pulls[t.token] = p
}
