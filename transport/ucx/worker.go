//go:build ucx && cgo

package ucx

// #cgo pkg-config: ucx
// #include <stdlib.h>
// #include <ucs/type/status.h>
// #include "vucx.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// The cgo calls of the transport, one Go function each, so that the rest
// of the package reads as Go. Only the owner goroutine calls those that
// take the worker, except signal, which UCX allows from any thread.

// A message's header is four words: its type, a value, the receiving
// connection's id and the sending connection's id. Connection ids are
// random, so that a peer cannot address a connection it did not open;
// only the open message asks UCX for the sender's endpoint (reply), since
// UCX looks a reply endpoint up by an id that it does not check against
// endpoints already closed.
const (
	msgData   = 1 // a frame; value: its sequence number
	msgClose  = 2 // the sender closed; data: the reason; value: its sequence number
	msgOpen   = 3 // the dialer's first message; value: its window; to: 0
	msgAccept = 4 // the listener's answer to open; value: its window
	msgWindow = 5 // credit returned; value: the bytes handled
	msgBatch  = 6 // frames, each after its length; value: the first one's sequence number; type>>8: how many
)

// header is a message's header.
type header struct {
	typ, value, to, from uint64
}

// Event types, as vucx.h numbers them.
const (
	evRecv     = C.VUCX_EV_RECV
	evRndv     = C.VUCX_EV_RNDV
	evRndvDone = C.VUCX_EV_RNDV_DONE
	evEpErr    = C.VUCX_EV_EP_ERR
	evConnReq  = C.VUCX_EV_CONN_REQ
	evSendErr  = C.VUCX_EV_SEND_ERR
	evSendDone = C.VUCX_EV_SEND_DONE
)

// maxEvents bounds the events one progress call lists.
const maxEvents = 256

// sendBatch is how many sends the owner hands UCX in one cgo call.
const sendBatch = 64

// worker is a UCP context and worker.
type worker struct {
	w     *C.vucx_worker
	sends *[sendBatch]C.vucx_send // C memory, owner only
}

// statusCanceled is UCS_ERR_CANCELED: a send dropped by a forced close.
const statusCanceled = C.UCS_ERR_CANCELED

// status is a UCX status code as an error.
type status int

func (s status) Error() string { return C.GoString(C.vucx_status_string(C.int(s))) }

func openWorker(tls, devices string, peerErrors bool) (*worker, error) {
	ctls := C.CString(tls)
	defer C.free(unsafe.Pointer(ctls))
	cdev := C.CString(devices)
	defer C.free(unsafe.Pointer(cdev))
	var msg [256]C.char
	var w *C.vucx_worker
	pe := C.int(0)
	if peerErrors {
		pe = 1
	}
	if st := C.vucx_open(ctls, cdev, pe, &w, &msg[0], C.size_t(len(msg))); st != 0 {
		return nil, fmt.Errorf("velo: ucx: %s", C.GoString(&msg[0]))
	}
	sends := (*[sendBatch]C.vucx_send)(C.calloc(sendBatch, C.size_t(unsafe.Sizeof(C.vucx_send{}))))
	return &worker{w: w, sends: sends}, nil
}

func (w *worker) close() {
	C.vucx_close(w.w)
	C.free(unsafe.Pointer(w.sends))
}

func (w *worker) efd() int { return int(C.vucx_efd(w.w)) }

func (w *worker) listen(ip string, port int) (int, error) {
	cip := C.CString(ip)
	defer C.free(unsafe.Pointer(cip))
	var bound C.int
	if st := C.vucx_listen(w.w, cip, C.int(port), &bound); st != 0 {
		return 0, status(st)
	}
	return int(bound), nil
}

func (w *worker) accept(req uint64) (uint64, error) {
	var ep C.uint64_t
	if st := C.vucx_accept(w.w, C.uint64_t(req), &ep); st != 0 {
		return 0, status(st)
	}
	return uint64(ep), nil
}

func (w *worker) reject(req uint64) { C.vucx_reject(w.w, C.uint64_t(req)) }

func (w *worker) dial(ip string, port int) (uint64, error) {
	cip := C.CString(ip)
	defer C.free(unsafe.Pointer(cip))
	var ep C.uint64_t
	if st := C.vucx_dial(w.w, cip, C.int(port), &ep); st != 0 {
		return 0, status(st)
	}
	return uint64(ep), nil
}

// closeEP starts closing ep; it returns the request to poll, or 0.
func (w *worker) closeEP(ep uint64, force bool) uint64 {
	f := C.int(0)
	if force {
		f = 1
	}
	return uint64(C.vucx_ep_close(w.w, C.uint64_t(ep), f))
}

func (w *worker) reqDone(req uint64) bool { return C.vucx_req_done(w.w, C.uint64_t(req)) != 0 }

func (w *worker) reqCancel(req uint64) { C.vucx_req_cancel(w.w, C.uint64_t(req)) }

// cbuf is a send buffer in C memory, from allocBuf.
type cbuf struct {
	p unsafe.Pointer
	n int
}

// allocBuf returns a C buffer of n bytes holding b's bytes (n = len(b)).
// Any goroutine may call it.
func allocBuf(b []byte) cbuf {
	p := C.vucx_alloc(C.size_t(len(b)))
	if p == nil {
		panic("velo: ucx: out of memory for a send buffer")
	}
	if len(b) > 0 {
		copy(unsafe.Slice((*byte)(p), len(b)), b)
	}
	return cbuf{p: p, n: len(b)}
}

// allocBufN returns a C buffer of n bytes to fill.
func allocBufN(n int) cbuf {
	p := C.vucx_alloc(C.size_t(n))
	if p == nil {
		panic("velo: ucx: out of memory for a send buffer")
	}
	return cbuf{p: p, n: n}
}

// bytes is the buffer as a slice, to write into it.
func (b cbuf) bytes() []byte { return unsafe.Slice((*byte)(b.p), b.n) }

func (b cbuf) free() { C.vucx_free(b.p) }

// send is one message for sendAll.
type send struct {
	ep    uint64
	buf   cbuf // from allocBuf, or pinned Go memory when token is set
	hdr   header
	reply bool
	token uint64 // not 0: buf is the sender's, see sendAll
}

// sendAll sends the messages in order and reports each one's error, nil
// if it went or is in flight. The layer owns the buffers of those without
// a token from here on; for those with one, done[i] reports that the send
// finished (or failed) in the call, else an evSendDone with its token
// follows.
func (w *worker) sendAll(s []send, errs []error, done []bool) {
	for len(s) > 0 {
		n := min(len(s), sendBatch)
		for i := range n {
			cs := &w.sends[i]
			cs.ep = C.uint64_t(s[i].ep)
			cs.buf = s[i].buf.p
			cs.len = C.uint64_t(s[i].buf.n)
			h := &s[i].hdr
			cs.hdr = [4]C.uint64_t{C.uint64_t(h.typ), C.uint64_t(h.value), C.uint64_t(h.to), C.uint64_t(h.from)}
			cs.reply = 0
			if s[i].reply {
				cs.reply = 1
			}
			cs.token = C.uint64_t(s[i].token)
		}
		C.vucx_send_batch(w.w, &w.sends[0], C.int(n))
		for i := range n {
			if st := w.sends[i].status; st != 0 {
				errs[i] = status(st)
			} else {
				errs[i] = nil
			}
			done[i] = w.sends[i].done != 0
		}
		s, errs, done = s[n:], errs[n:], done[n:]
	}
}

// event is one entry of what progress lists.
type event = C.vucx_event

// headerOf returns a message event's header.
func headerOf(e *event) header {
	return header{typ: uint64(e.hdr[0]), value: uint64(e.hdr[1]), to: uint64(e.hdr[2]), from: uint64(e.hdr[3])}
}

// progress drops the consumed events, progresses the worker and returns
// the events it lists; their data stays valid until the next call.
func (w *worker) progress(consumed int) []event {
	n := int(C.vucx_progress(w.w, C.int(consumed), maxEvents))
	if n == 0 {
		return nil
	}
	return unsafe.Slice(C.vucx_events(w.w), n)
}

// data returns the bytes of a receive event, copied into Go memory.
func (w *worker) data(e *event) []byte {
	b := make([]byte, int(e.len))
	if e.len == 0 {
		return b
	}
	var src unsafe.Pointer
	if e.flags&C.VUCX_RECV_MALLOC != 0 {
		src = e.copy
	} else {
		src = unsafe.Add(unsafe.Pointer(C.vucx_arena(w.w)), int(e.off))
	}
	copy(b, unsafe.Slice((*byte)(src), len(b)))
	if e.flags&C.VUCX_RECV_MALLOC != 0 {
		C.free(src)
		e.copy = nil
	}
	return b
}

// dropData frees the data of a receive event that is not used, when it
// was copied outside the arena; rendezvous events have none.
func (w *worker) dropData(e *event) {
	if e._type == evRecv && e.flags&C.VUCX_RECV_MALLOC != 0 && e.copy != nil {
		C.free(e.copy)
		e.copy = nil
	}
}

// arm prepares the worker to sleep: true when it may (nothing pending).
func (w *worker) arm() (bool, error) {
	switch st := C.vucx_arm(w.w); {
	case st == 0:
		return true, nil
	case st == 1:
		return false, nil
	default:
		return false, status(st)
	}
}

func (w *worker) signal() { C.vucx_signal(w.w) }

// pull starts receiving a rendezvous message into buf, which must stay
// pinned until it is done: done reports that it finished at once.
func (w *worker) pull(desc uint64, buf []byte, token uint64) (done bool, err error) {
	st := C.vucx_rndv_recv(w.w, C.uint64_t(desc), unsafe.Pointer(&buf[0]), C.uint64_t(len(buf)), C.uint64_t(token))
	switch {
	case st == 0:
		return true, nil
	case st == 1:
		return false, nil
	default:
		return false, status(st)
	}
}

func (w *worker) release(desc uint64) { C.vucx_data_release(w.w, C.uint64_t(desc)) }
