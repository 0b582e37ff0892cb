package velo

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

// StreamHandle names a stream: the instance that opened it (its receiver)
// and a random 64-bit id. It is a small comparable value that travels in
// payloads (encoding.BinaryMarshaler and TextMarshaler), like an event's
// handle: the receiver opens a stream and gives its handle to whoever
// should send on it.
type StreamHandle struct {
	Owner peer.ID // the receiving instance
	ID    uint64  // random, never 0
}

// StreamHandleSize is the length of a StreamHandle's binary form: the
// owner's 16-byte ID, then the id as a big-endian uint64.
const StreamHandleSize = 16 + 8

// IsZero reports whether h is the zero handle, which names no stream.
func (h StreamHandle) IsZero() bool { return h == StreamHandle{} }

// String returns "owner:id", the owner in peer.ID's hexadecimal form and
// the id in 16 hexadecimal digits.
func (h StreamHandle) String() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.ID)
	return h.Owner.String() + ":" + hex.EncodeToString(b[:])
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (h StreamHandle) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, StreamHandleSize)
	b = append(b, h.Owner[:]...)
	return binary.BigEndian.AppendUint64(b, h.ID), nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler.
func (h *StreamHandle) UnmarshalBinary(b []byte) error {
	if len(b) != StreamHandleSize {
		return fmt.Errorf("velo: stream handle of %d bytes, want %d", len(b), StreamHandleSize)
	}
	copy(h.Owner[:], b[:16])
	h.ID = binary.BigEndian.Uint64(b[16:])
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (h StreamHandle) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *StreamHandle) UnmarshalText(b []byte) error {
	owner, id, ok := strings.Cut(string(b), ":")
	if !ok {
		return fmt.Errorf("velo: stream handle %q: want owner:id", b)
	}
	o, err := peer.Parse(owner)
	if err != nil {
		return fmt.Errorf("velo: stream handle %q: %w", b, err)
	}
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != 8 {
		return fmt.Errorf("velo: stream handle %q: want 16 hexadecimal digits after the colon", b)
	}
	h.Owner, h.ID = o, binary.BigEndian.Uint64(raw)
	return nil
}

// StreamOptions configure a stream when it is opened.
type StreamOptions struct {
	// Window is how many bytes of items the sender may have in flight,
	// sent and not yet taken by Recv: the receiver holds at most Window
	// plus one item. Zero: DefaultStreamWindow (1 MiB).
	Window int
}

// DefaultStreamWindow is StreamOptions.Window's default: 1 MiB.
const DefaultStreamWindow = 1 << 20

// MaxStreamWindow bounds StreamOptions.Window: 1 GiB.
const MaxStreamWindow = 1 << 30

// Validate reports a window out of range.
func (o StreamOptions) Validate() error {
	switch {
	case o.Window < 0:
		return fmt.Errorf("velo: negative StreamOptions.Window %d", o.Window)
	case o.Window > MaxStreamWindow:
		return fmt.Errorf("velo: StreamOptions.Window %d is over %d", o.Window, MaxStreamWindow)
	}
	return nil
}

// StreamReceiver is the receiving end of a stream, made by OpenStream:
// items arrive in the order sent, through Recv or All. Its methods are
// safe for concurrent use, but items are taken one at a time.
type StreamReceiver[T any] struct{ st *rstream }

// StreamSender is the sending end of a stream, made by AttachStream. Send,
// Close and CloseWithError are safe for concurrent use; items sent by one
// goroutine arrive in the order sent.
type StreamSender[T any] struct{ st *sstream }

// OpenStream opens a stream that this instance receives, with items of
// type T (MessagePack; []byte items travel as they are). Give its Handle
// to the instance that should send; until one attaches, Recv waits. The
// stream lives until its sender closes it, it is cancelled, its sender's
// connection is lost, or the messenger shuts down: a receiver that stops
// reading should Cancel.
func OpenStream[T any](m *Messenger, o StreamOptions) (*StreamReceiver[T], error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Window == 0 {
		o.Window = DefaultStreamWindow
	}
	if m.draining() {
		return nil, newError(CodeShuttingDown, system.StreamAttach, nil, "instance %s is shutting down", m.id.Short())
	}
	st := &rstream{m: m, window: o.Window, notify: make(chan struct{}, 1)}
	m.streams.mu.Lock()
	if m.streams.closed {
		m.streams.mu.Unlock()
		return nil, newError(CodeShuttingDown, system.StreamAttach, nil, "instance %s is shutting down", m.id.Short())
	}
	for st.id == 0 || m.streams.recv[st.id] != nil {
		st.id = randomID()
	}
	m.streams.recv[st.id] = st
	m.streams.mu.Unlock()
	return &StreamReceiver[T]{st: st}, nil
}

// Handle returns the stream's handle.
func (r *StreamReceiver[T]) Handle() StreamHandle {
	return StreamHandle{Owner: r.st.m.id, ID: r.st.id}
}

// Recv returns the next item. At the end of the stream it returns io.EOF
// itself (compare with ==) when the sender closed it, the sender's error (its code kept, Remote
// set) when it closed with one, ErrPeerLost when its connection was lost,
// ErrCanceled after Cancel, or ctx's error. An item that does not decode
// into T is returned as ErrBadPayload; the stream goes on.
func (r *StreamReceiver[T]) Recv(ctx context.Context) (T, error) {
	var zero T
	b, err := r.st.recv(ctx)
	if err != nil {
		return zero, err
	}
	return decodeItem[T](b)
}

// All returns an iterator over the items, in order. It ends after the last
// item when the sender closes the stream, or after yielding an error
// (anything Recv returns but io.EOF, with the zero T). Breaking out of the
// loop leaves the stream open: Cancel it if nothing more will be read.
func (r *StreamReceiver[T]) All(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			v, err := r.Recv(ctx)
			if err == io.EOF { // itself: a lost connection's error may wrap an EOF
				return
			}
			if !yield(v, err) || err != nil && !errors.Is(err, ErrBadPayload) {
				return
			}
		}
	}
}

// Cancel ends the stream on this side: Recv returns ErrCanceled from now
// on, what was queued is dropped, and the sender's next Send fails with
// ErrCanceled. Cancel is idempotent; after the stream ended it only frees
// what is queued.
func (r *StreamReceiver[T]) Cancel() { r.st.cancel() }

// AttachStream attaches this instance as the sender of the stream h names.
// It fails with ErrStreamUnknown if the owner has no such stream open (or
// another sender attached already), and with the errors of a call when the
// owner cannot be reached.
func AttachStream[T any](ctx context.Context, m *Messenger, h StreamHandle) (*StreamSender[T], error) {
	st, err := m.attachStream(ctx, h)
	if err != nil {
		return nil, err
	}
	return &StreamSender[T]{st: st}, nil
}

// Send sends one item. It waits while the receiver's window is full (flow
// control) until credit comes, the stream ends, or ctx ends. It fails with
// ErrCanceled once the receiver cancelled, ErrPeerLost once the
// connection to the receiver was lost, and ErrClosed after Close.
func (s *StreamSender[T]) Send(ctx context.Context, item T) error {
	b, err := encodeItem(item)
	if err != nil {
		return err
	}
	return s.st.send(ctx, b)
}

// Close ends the stream normally: the receiver reads what was sent, then
// io.EOF. Close is idempotent.
func (s *StreamSender[T]) Close() error { return s.st.end(context.Background(), nil) }

// CloseWithError ends the stream with err, which the receiver's Recv
// returns after the items sent before (a *velo.Error keeps its code; any
// other error arrives as a handler error with its text).
func (s *StreamSender[T]) CloseWithError(err error) error {
	if err == nil {
		err = newError(CodeHandlerError, "", nil, "stream closed with a nil error")
	}
	return s.st.end(context.Background(), err)
}

// Handle returns the handle of the stream s sends on.
func (s *StreamSender[T]) Handle() StreamHandle { return s.st.h }

// ErrStreamUnknown is returned by AttachStream when the owner has no such
// stream, or it has a sender already.
var ErrStreamUnknown = &Error{Code: CodeHandlerNotFound, Message: "no such stream open for attaching"}

func encodeItem[T any](item T) ([]byte, error) {
	if b, ok := any(item).([]byte); ok {
		return b, nil
	}
	b, err := msgpack.Marshal(item)
	if err != nil {
		return nil, newError(CodeBadPayload, system.StreamItem, err, "encoding a stream item: %v", err)
	}
	return b, nil
}

func decodeItem[T any](b []byte) (T, error) {
	var v T
	if p, ok := any(&v).(*[]byte); ok {
		*p = b
		return v, nil
	}
	if err := msgpack.Unmarshal(b, &v); err != nil {
		return v, &Error{Code: CodeBadPayload, Message: "stream item does not decode: " + err.Error(), cause: err}
	}
	return v, nil
}

func randomID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// streamTable holds an instance's streams: those it receives (by stream
// id) and those it sends on (by sender id).
type streamTable struct {
	mu      sync.Mutex
	recv    map[uint64]*rstream
	send    map[uint64]*sstream
	closed  bool           // shut down: no more streams or replies start
	replies int            // replies being sent (streamReply)
	wg      sync.WaitGroup // the control messages sent from the receive path
}

// rstream is the receiving end's state.
type rstream struct {
	m      *Messenger
	id     uint64
	window int
	notify chan struct{} // an item, the end or a cancel arrived

	mu       sync.Mutex
	sess     *session // the sender's connection, once attached; the stream is bound to it
	sid      uint64   // the sender's id of the stream
	nextSeq  uint64
	queue    [][]byte
	queued   int
	consumed int   // bytes taken since the last credit
	end      error // io.EOF, the sender's error, ErrPeerLost: after the queue
	gone     error // Cancel or shutdown: at once
}

// sstream is the sending end's state.
type sstream struct {
	m        *Messenger
	h        StreamHandle
	sid      uint64
	sess     *session
	attached chan struct{} // closed by the first credit or a cancel

	wmu  sync.Mutex // serialises sends, so that seq order is send order
	seq  uint64     // guarded by wmu
	wbuf []byte     // guarded by wmu: the message being sent (the transport keeps no reference)

	mu      sync.Mutex
	room    chan struct{} // credit came or the stream ended
	credit  int
	err     error // why Send fails from now on
	ended   bool  // Close or CloseWithError went out
	started bool
}

func (st *rstream) wake() {
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

func (st *rstream) recv(ctx context.Context) ([]byte, error) {
	for {
		st.mu.Lock()
		if st.gone != nil {
			err := st.gone
			st.mu.Unlock()
			return nil, err
		}
		if len(st.queue) > 0 {
			b := st.queue[0]
			st.queue[0] = nil
			st.queue = st.queue[1:]
			st.queued -= len(b)
			st.consumed += len(b)
			var grant int
			var s *session
			if st.consumed >= st.window/2 && st.end == nil {
				grant, s = st.consumed, st.sess
				st.consumed = 0
			}
			sid := st.sid
			if len(st.queue) > 0 || st.end != nil {
				st.wake()
			}
			st.mu.Unlock()
			if grant > 0 && s != nil {
				// Credit goes back from the reader's goroutine (a slow
				// reader is what holds the sender back), whatever the
				// reader's ctx: lost credit would stall the stream.
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if sendControl(cctx, s, system.StreamCredit, appendCredit(nil, sid, uint64(grant))) != nil {
					st.mu.Lock()
					st.consumed += grant // the next Recv tries again
					st.mu.Unlock()
				}
				cancel()
			}
			return b, nil
		}
		if st.end != nil {
			err := st.end
			st.mu.Unlock()
			st.forget()
			return nil, err
		}
		st.mu.Unlock()
		select {
		case <-st.notify:
		case <-ctx.Done():
			return nil, ctxError(ctx, system.StreamItem)
		}
	}
}

// forget removes the stream from the table.
func (st *rstream) forget() {
	st.m.streams.mu.Lock()
	if st.m.streams.recv[st.id] == st {
		delete(st.m.streams.recv, st.id)
	}
	st.m.streams.mu.Unlock()
}

func (st *rstream) cancel() {
	st.mu.Lock()
	notify := st.sess != nil && st.end == nil && st.gone == nil
	if st.gone == nil {
		st.gone = newError(CodeCanceled, system.StreamItem, nil, "stream %x cancelled by its receiver", st.id)
	}
	st.queue, st.queued = nil, 0
	s, sid := st.sess, st.sid
	st.mu.Unlock()
	st.wake()
	st.forget()
	if notify {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		sendControl(ctx, s, system.StreamCancel, appendCancelMsg(nil, sid, wire.StatusCanceled, "cancelled by the receiver"))
	}
}

// finish ends the stream with err after what is queued (end) or at once.
func (st *rstream) finish(err error, now bool) {
	st.mu.Lock()
	if now {
		if st.gone == nil {
			st.gone = err
		}
		st.queue, st.queued = nil, 0
	} else if st.end == nil {
		st.end = err
	}
	st.mu.Unlock()
	st.wake()
}

func (m *Messenger) attachStream(ctx context.Context, h StreamHandle) (*sstream, error) {
	if h.IsZero() || h.ID == 0 {
		return nil, newError(CodeBadRequest, system.StreamAttach, nil, "attaching to the zero stream handle")
	}
	s, err := m.sessionFor(ctx, h.Owner, system.StreamAttach)
	if err != nil {
		return nil, err
	}
	st := &sstream{m: m, h: h, sess: s, attached: make(chan struct{}), room: make(chan struct{}, 1)}
	m.streams.mu.Lock()
	if m.streams.closed {
		m.streams.mu.Unlock()
		return nil, newError(CodeShuttingDown, system.StreamAttach, nil, "instance %s is shutting down", m.id.Short())
	}
	for st.sid == 0 || m.streams.send[st.sid] != nil {
		st.sid = randomID()
	}
	m.streams.send[st.sid] = st
	m.streams.mu.Unlock()
	if s.ended() {
		st.fail(newError(CodePeerLost, system.StreamAttach, nil, "connection to %s lost", h.Owner.Short()))
	}
	if err := sendControl(ctx, s, system.StreamAttach, appendAttach(nil, h.ID, st.sid)); err != nil {
		st.forget()
		return nil, err
	}
	select {
	case <-st.attached:
	case <-ctx.Done():
		st.forget()
		return nil, ctxError(ctx, system.StreamAttach)
	}
	st.mu.Lock()
	err = st.err
	st.mu.Unlock()
	if err != nil && !st.started {
		st.forget()
		return nil, err
	}
	return st, nil
}

func (st *sstream) forget() {
	st.m.streams.mu.Lock()
	if st.m.streams.send[st.sid] == st {
		delete(st.m.streams.send, st.sid)
	}
	st.m.streams.mu.Unlock()
}

func (st *sstream) wakeRoom() {
	select {
	case st.room <- struct{}{}:
	default:
	}
}

// fail ends the sending side: every Send from now on returns err.
func (st *sstream) fail(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	st.mu.Unlock()
	closeOnce(st.attached)
	st.wakeRoom()
}

func (st *sstream) grant(n uint64) {
	st.mu.Lock()
	st.credit += int(min(n, MaxStreamWindow*2))
	st.started = true
	st.mu.Unlock()
	closeOnce(st.attached)
	st.wakeRoom()
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func (st *sstream) send(ctx context.Context, b []byte) error {
	for {
		st.mu.Lock()
		if st.err != nil {
			err := st.err
			st.mu.Unlock()
			return err
		}
		if st.ended {
			st.mu.Unlock()
			return newError(CodeBadRequest, system.StreamItem, nil, "send on a closed stream %s", st.h)
		}
		if st.credit > 0 {
			// A sender may overdraw its credit by one item, so that an
			// item larger than what is left never waits forever.
			st.credit -= len(b)
			st.mu.Unlock()
			break
		}
		st.mu.Unlock()
		select {
		case <-st.room:
		case <-ctx.Done():
			return ctxError(ctx, system.StreamItem)
		}
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	err, ended := st.err, st.ended
	st.mu.Unlock()
	if err != nil || ended { // the stream ended while this Send waited
		st.grant(uint64(len(b)))
		if err == nil {
			err = newError(CodeBadRequest, system.StreamItem, nil, "send on a closed stream %s", st.h)
		}
		return err
	}
	seq := st.seq
	msg := appendItem(st.wbuf[:0], st.h.ID, seq, b)
	if cap(msg) <= 64<<10 { // keep a small buffer, let a large one go
		st.wbuf = msg
	}
	if err := sendControl(ctx, st.sess, system.StreamItem, msg); err != nil {
		if NotDelivered(err) {
			// Nothing went: the stream goes on as if Send had not been
			// called (its credit back, its number unused).
			st.grant(uint64(len(b)))
			return err
		}
		// An item that may or may not have gone breaks the order the
		// receiver checks: the stream is over, on both sides.
		st.fail(err)
		st.seq++
		ctx2, cancel := context.WithTimeout(context.Background(), time.Second)
		status, m := toStatus(err)
		sendControl(ctx2, st.sess, system.StreamEnd, appendEnd(nil, st.h.ID, st.seq, status, m))
		cancel()
		st.forget()
		return err
	}
	st.seq++
	return nil
}

func (st *sstream) end(ctx context.Context, cause error) error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	if st.ended || st.err != nil {
		err := st.err
		st.mu.Unlock()
		st.forget()
		if errors.Is(err, ErrCanceled) {
			return nil // the receiver is done with it already
		}
		return err
	}
	st.ended = true
	st.mu.Unlock()
	status, msg := wire.StatusOK, ""
	if cause != nil {
		status, msg = toStatus(cause)
	}
	seq := st.seq
	st.seq++
	err := sendControl(ctx, st.sess, system.StreamEnd, appendEnd(nil, st.h.ID, seq, status, msg))
	st.forget()
	st.wakeRoom()
	return err
}

// sendControl sends one message of the streams protocol on s: a stream is
// bound to one connection, so that its messages keep their order and its
// end is that connection's.
func sendControl(ctx context.Context, s *session, handler string, payload []byte) error {
	if s.ended() {
		return newError(CodePeerLost, handler, nil, "connection to %s lost", s.peer.ID.Short())
	}
	req := wire.Request{Kind: wire.KindAMSend, Handler: handler, Payload: payload}
	_, err := s.roundTrip(ctx, &req)
	return err
}

// The streams protocol's payloads, little endian:
//
//	attach: stream id u64, sender id u64
//	item:   stream id u64, seq u64, the item
//	end:    stream id u64, seq u64, status u16, message
//	credit: sender id u64, bytes u64
//	cancel: sender id u64, status u16, message
func appendAttach(b []byte, id, sid uint64) []byte {
	return binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(b, id), sid)
}

func appendItem(b []byte, id, seq uint64, item []byte) []byte {
	b = binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(b, id), seq)
	return append(b, item...)
}

func appendEnd(b []byte, id, seq uint64, st wire.Status, msg string) []byte {
	b = binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(b, id), seq)
	return append(binary.LittleEndian.AppendUint16(b, uint16(st)), msg...)
}

func appendCredit(b []byte, sid, n uint64) []byte {
	return binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(b, sid), n)
}

func appendCancelMsg(b []byte, sid uint64, st wire.Status, msg string) []byte {
	b = binary.LittleEndian.AppendUint64(b, sid)
	return append(binary.LittleEndian.AppendUint16(b, uint16(st)), msg...)
}

// maxStreamMessage bounds the message of an end or a cancel.
const maxStreamMessage = 1 << 10

// deliverStream takes a message of the streams protocol on the receive
// path, as deliverEvent does for events, and reports whether it was one.
// Nothing here blocks on the network: answers to an attach go out from a
// goroutine of their own.
func (m *Messenger) deliverStream(s *session, req *wire.Request) bool {
	if !system.IsStream(req.Handler) {
		return false
	}
	if req.Kind != wire.KindAMSend {
		s.finish(newInbound(s, req), nil, nil, newError(CodeBadRequest, req.Handler, nil, "stream messages are one-way (AMSend)"))
		return true
	}
	if err := m.streamMessage(s, req.Handler, req.Payload); err != nil {
		m.warn(m.peerLog, "velo: stream message refused", "handler", req.Handler, "sender", s.peer.ID.Short(), "err", err)
	}
	return true
}

func (m *Messenger) streamMessage(s *session, handler string, p []byte) error {
	if len(p) < 8 {
		return fmt.Errorf("payload of %d bytes", len(p))
	}
	id := binary.LittleEndian.Uint64(p)
	switch handler {
	case system.StreamAttach:
		if len(p) != 16 {
			return fmt.Errorf("attach of %d bytes", len(p))
		}
		sid := binary.LittleEndian.Uint64(p[8:])
		m.streams.mu.Lock()
		st := m.streams.recv[id]
		m.streams.mu.Unlock()
		reply := appendCancelMsg(nil, sid, wire.StatusHandlerNotFound, "no such stream open for attaching")
		name := system.StreamCancel
		if st != nil {
			st.mu.Lock()
			if st.sess == nil && st.gone == nil && st.end == nil && !s.ended() {
				st.sess, st.sid = s, sid
				reply, name = appendCredit(nil, sid, uint64(st.window)), system.StreamCredit
			}
			st.mu.Unlock()
		}
		m.streamReply(s, name, reply)
	case system.StreamItem, system.StreamEnd:
		if len(p) < 16 {
			return fmt.Errorf("%s of %d bytes", handler, len(p))
		}
		seq := binary.LittleEndian.Uint64(p[8:])
		m.streams.mu.Lock()
		st := m.streams.recv[id]
		m.streams.mu.Unlock()
		if st == nil {
			return nil // cancelled or ended here: what was in flight is dropped
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		switch {
		case st.sess != s:
			return fmt.Errorf("a message for stream %x from a connection not attached to it", id)
		case st.gone != nil || st.end != nil:
			return nil
		case seq != st.nextSeq:
			st.end = newError(CodePeerLost, handler, nil, "stream %x: item %d arrived when %d was due", id, seq, st.nextSeq)
			st.wake()
			m.streamReply(s, system.StreamCancel, appendCancelMsg(nil, st.sid, wire.StatusPeerLost, "an item went missing"))
			return nil
		}
		st.nextSeq++
		if handler == system.StreamEnd {
			if len(p) < 18 || len(p) > 18+maxStreamMessage {
				return fmt.Errorf("end of %d bytes", len(p))
			}
			status := wire.Status(binary.LittleEndian.Uint16(p[16:]))
			if status == wire.StatusOK {
				st.end = io.EOF
			} else {
				err := fromStatus(status, string(p[18:]), system.StreamItem)
				st.end = err
			}
			st.wake()
			return nil
		}
		item := p[16:]
		if st.queued+len(item) > st.window+m.opts.MaxPayload {
			st.end = newError(CodeBadRequest, handler, nil, "stream %x: the sender went past its window", id)
			st.wake()
			m.streamReply(s, system.StreamCancel, appendCancelMsg(nil, st.sid, wire.StatusBadRequest, "past the window"))
			return nil
		}
		st.queue = append(st.queue, item)
		st.queued += len(item)
		st.wake()
	case system.StreamCredit, system.StreamCancel:
		m.streams.mu.Lock()
		st := m.streams.send[id]
		m.streams.mu.Unlock()
		if st == nil {
			return nil
		}
		if st.sess != s {
			return fmt.Errorf("a %s for sender %x from a connection it does not send on", handler, id)
		}
		if handler == system.StreamCredit {
			if len(p) != 16 {
				return fmt.Errorf("credit of %d bytes", len(p))
			}
			st.grant(binary.LittleEndian.Uint64(p[8:]))
			return nil
		}
		if len(p) < 10 || len(p) > 10+maxStreamMessage {
			return fmt.Errorf("cancel of %d bytes", len(p))
		}
		status := wire.Status(binary.LittleEndian.Uint16(p[8:]))
		var err error
		switch status {
		case wire.StatusCanceled:
			err = newError(CodeCanceled, system.StreamItem, nil, "stream %s cancelled by its receiver", st.h)
		case wire.StatusHandlerNotFound:
			err = ErrStreamUnknown
		default:
			err = fromStatus(status, string(p[10:]), system.StreamItem)
		}
		st.fail(err)
		st.forget()
	}
	return nil
}

// streamReply sends a control message from the receive path without
// waiting there for room on the connection.
func (m *Messenger) streamReply(s *session, handler string, payload []byte) {
	m.streams.mu.Lock()
	defer m.streams.mu.Unlock()
	if m.streams.closed || m.streams.replies >= maxStreamReplies {
		return // a peer that floods attaches and reads nothing gets no more answers
	}
	m.streams.replies++
	m.streams.wg.Go(func() {
		ctx, cancel := context.WithTimeout(m.handlerCtx, 5*time.Second)
		defer cancel()
		sendControl(ctx, s, handler, payload)
		m.streams.mu.Lock()
		m.streams.replies--
		m.streams.mu.Unlock()
	})
}

// maxStreamReplies bounds the control messages the receive path has
// handed to goroutines and not yet sent.
const maxStreamReplies = 1024

// streamsSessionDown ends the streams bound to s, a connection that
// closed: both ends see ErrPeerLost (a receiver after the items queued).
func (m *Messenger) streamsSessionDown(s *session, reason error) {
	lost := newError(CodePeerLost, system.StreamItem, reason, "connection to %s lost", s.peer.ID.Short())
	var recv []*rstream
	var send []*sstream
	m.streams.mu.Lock()
	for _, st := range m.streams.recv {
		recv = append(recv, st)
	}
	for _, st := range m.streams.send {
		if st.sess == s {
			send = append(send, st)
		}
	}
	m.streams.mu.Unlock()
	for _, st := range recv {
		st.mu.Lock()
		mine := st.sess == s
		st.mu.Unlock()
		if mine {
			st.finish(lost, false)
		}
	}
	for _, st := range send {
		st.fail(lost)
		st.forget()
	}
}

// streamsShutdown ends every stream at shutdown, before the connections
// close, and waits for the control messages in flight.
func (m *Messenger) streamsShutdown() {
	down := newError(CodeShuttingDown, system.StreamItem, nil, "instance %s is shutting down", m.id.Short())
	m.streams.mu.Lock()
	recv := m.streams.recv
	send := m.streams.send
	m.streams.recv = make(map[uint64]*rstream)
	m.streams.send = make(map[uint64]*sstream)
	m.streams.closed = true
	m.streams.mu.Unlock()
	for _, st := range recv {
		st.finish(down, true)
	}
	for _, st := range send {
		st.fail(down)
	}
	m.streams.wg.Wait()
}
