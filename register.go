package velo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/velo-messenger/velo/actor"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/mailbox"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

// RegisterHandler adds h. A name already registered is refused with
// ErrHandlerExists, never replaced; names starting with '_' are reserved.
func (m *Messenger) RegisterHandler(h *Handler) error {
	if h == nil {
		return fmt.Errorf("%w: nil handler", ErrInvalidHandler)
	}
	if system.IsReserved(h.name) {
		return fmt.Errorf("%w: name %q: names starting with '_' are reserved", ErrInvalidHandler, h.name)
	}
	return m.register(h)
}

func (m *Messenger) register(h *Handler) error {
	if h.err != nil {
		return h.err
	}
	if h.name == "" || len(h.name) > wire.MaxHandlerName {
		return fmt.Errorf("%w: name of %d bytes, want 1..%d", ErrInvalidHandler, len(h.name), wire.MaxHandlerName)
	}
	m.hmu.Lock()
	defer m.hmu.Unlock()
	if m.state.Load() != stateRunning {
		return newError(CodeShuttingDown, h.name, nil, "cannot register while shutting down")
	}
	cur := *m.handlers.Load()
	if _, ok := cur[h.name]; ok {
		return fmt.Errorf("%w: %q", ErrHandlerExists, h.name)
	}
	if err := helloRoom(cur, h.name); err != nil {
		return err
	}
	st := newHandlerStats()
	a, err := m.newActor(h, st)
	if err != nil {
		return err
	}
	next := maps.Clone(cur)
	next[h.name] = &handlerEntry{name: h.name, actor: a, stats: st, here: h.mode == actor.Spawn && h.maxConc == 0, shape: h.shape, reuse: h.reuse}
	m.handlers.Store(&next)
	if !system.IsReserved(h.name) {
		m.handlersChanged()
	}
	return nil
}

func (m *Messenger) newActor(h *Handler, st *handlerStats) (*actor.Actor[peer.ID, *inbound], error) {
	name := h.name
	return actor.New(actor.Config[peer.ID, *inbound]{
		Name:           name,
		Mode:           h.mode,
		Mailbox:        h.mailbox,
		Overflow:       h.overflow,
		MaxConcurrency: h.maxConc,
		Restart:        h.restart,
		Logger:         m.log,
		Factory: func() func(context.Context, *inbound) {
			fn := m.serverChain(name, h.factory())
			return func(ctx context.Context, in *inbound) {
				if out, err := fn(ctx, &in.c); out != nil || err != nil {
					x := in.extra()
					x.out, x.err = out, err
				}
			}
		},
		// The answer goes out once the handler's mailbox has room again,
		// so a caller that sends one call after another is never refused.
		Wait: func(in *inbound, waiting bool) {
			if waiting {
				in.s.stalled.Add(1)
			} else {
				in.s.stalled.Add(-1)
			}
		},
		After: func(in *inbound) {
			if x := in.more; x != nil {
				in.s.finish(in, st, x.out, x.err)
				x.out = nil
			} else {
				in.s.finish(in, st, nil, nil)
			}
			in.giveBack()
		},
		OnPanic: func(in *inbound, p *actor.PanicError) {
			st.panics.Add(1)
			// The actor has logged the panic; its stack is in p for errors.As.
			in.s.finish(in, st, nil, &Error{Code: CodeHandlerPanic, Handler: name, Message: fmt.Sprint(p.Value), cause: p})
			in.giveBack()
		},
		// A request whose ctx ended while it waited for its turn (the
		// caller gave up, its deadline passed, Shutdown stopped the
		// handlers) is not run; it is answered with the ctx's error, as a
		// handler that honours its ctx would have answered.
		Expired: func(in *inbound, err error) {
			in.s.finish(in, st, nil, err)
			in.giveBack()
		},
		Drop: func(in *inbound, err error) {
			in.s.finish(in, st, nil, m.tellError(name, nil, err))
			in.giveBack()
		},
	})
}

// tellError turns a refusal by a handler's actor into the caller's error.
func (m *Messenger) tellError(handler string, ctx context.Context, err error) error {
	switch {
	case errors.Is(err, mailbox.ErrFull):
		m.warn(m.busyLog, "velo: handler busy, request refused", "handler", handler)
		return newError(CodeBusy, handler, err, "mailbox of %q is full", handler)
	case m.draining() && (errors.Is(err, actor.ErrStopped) || errors.Is(err, mailbox.ErrClosed) || ctx == nil):
		return newError(CodeShuttingDown, handler, err, "instance %s is shutting down", m.id.Short())
	case errors.Is(err, actor.ErrStopped):
		return newError(CodeHandlerStopped, handler, err, "%v", err)
	case ctx != nil && ctx.Err() != nil:
		return ctxError(ctx, handler)
	}
	return newError(CodeInternal, handler, err, "%v", err)
}

// helloRoom refuses a user handler that this instance's hello could not
// list (system.MaxHelloHandlers, system.MaxHelloHandlerBytes): peers
// would refuse the hello, and no connection could be made.
func helloRoom(cur map[string]*handlerEntry, name string) error {
	if system.IsReserved(name) {
		return nil
	}
	n, bytes := 1, len(name)
	for other := range cur {
		if !system.IsReserved(other) {
			n, bytes = n+1, bytes+len(other)
		}
	}
	if err := system.CheckHandlers(n, bytes); err != nil {
		return fmt.Errorf("%w: %q: %w", ErrInvalidHandler, name, err)
	}
	return nil
}

// handlerNames lists the user handlers, sorted.
func (m *Messenger) handlerNames() []string {
	var names []string
	for n := range *m.handlers.Load() {
		if !system.IsReserved(n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// ListHandlers asks the instance id for the names of its handlers.
func (m *Messenger) ListHandlers(ctx context.Context, id peer.ID) ([]string, error) {
	b, err := m.Unary(system.ListHandlers).Instance(id).Send(ctx)
	if err != nil {
		return nil, err
	}
	names, err := system.DecodeNames(b)
	if err != nil {
		return nil, newError(CodeBadPayload, system.ListHandlers, err, "decoding handler names: %v", err)
	}
	return names, nil
}

// handlerEntry is a registered handler: its actor and what it answers.
type handlerEntry struct {
	name  string
	actor *actor.Actor[peer.ID, *inbound]
	gone  atomic.Bool // unregistered: a request that raced in is not found
	stats *handlerStats
	shape shape // for _describe
	// here: an uncapped Spawn handler, whose messages may run on the
	// receive goroutine (inline.go) from heldUntil (monoNow) on.
	here      bool
	heldUntil atomic.Int64
	reuse     bool // ReusePayload: its payloads come back when it is done with them
}
