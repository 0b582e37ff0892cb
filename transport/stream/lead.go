package stream

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/transport"
)

// callerQuiet is how long a connection must carry no request before Serve
// lets callers read their own responses: on a connection used both ways,
// Serve keeps reading, so that a request is read the moment it arrives.
const callerQuiet = 10 * time.Second

// lingerTick is how often Serve looks whether callers still take turns
// reading. It takes the connection back at the first look that finds the
// turn free and no caller led since the look before; so a frame that
// arrives once the last caller left waits at most two ticks. A variable
// only so that tests can widen it (export_test.go).
var lingerTick = time.Millisecond

// quiet reports whether the connection carried no request for
// callerQuiet. Serve's goroutine only.
func (c *Conn) quiet() bool {
	if c.reqs != c.reqsSeen {
		c.reqsSeen = c.reqs
		c.busyUntil = time.Now().Add(callerQuiet)
		return false
	}
	if !c.busyUntil.IsZero() {
		if time.Now().Before(c.busyUntil) {
			return false
		}
		c.busyUntil = time.Time{}
	}
	return true
}

// stepAside gives the read turn up if nobody waits for a response, and
// waits until Serve should read again: it handles the frame a caller left
// it, if any, and returns the error that ended a caller's turn, or nil.
func (c *Conn) stepAside() error {
	c.rmu.Lock()
	if c.busy.Waiting() {
		c.rmu.Unlock()
		return nil
	}
	c.turn = turnFree
	seen := c.leads
	c.rmu.Unlock()
	if c.linger == nil {
		c.linger = time.NewTimer(lingerTick)
	} else {
		c.linger.Reset(lingerTick)
	}
	done := c.done
	for {
		select {
		case <-c.wakeServe:
		case <-c.linger.C:
		case <-done:
			done = nil // closed: take the turn back, or wait for the caller's
		}
		c.rmu.Lock()
		switch {
		case c.turn == turnServe: // a caller left it to us
			f, err := c.handed, c.readErr
			c.handed, c.readErr = nil, nil
			c.rmu.Unlock()
			c.linger.Stop()
			if err != nil {
				return err
			}
			if f != nil {
				if wire.FrameType(f) == wire.TypeRequest {
					c.reqs++
				}
				return c.h.HandleFrame(f)
			}
			return nil
		case c.turn == turnFree && (c.leads == seen || done == nil):
			c.turn = turnServe
			c.rmu.Unlock()
			c.linger.Stop()
			return nil
		}
		seen = c.leads
		c.rmu.Unlock()
		if done != nil {
			c.linger.Reset(lingerTick)
		}
	}
}

// Lead implements transport.Leader.
func (c *Conn) Lead(ctx context.Context, w transport.Awaited) bool {
	if c.busy == nil {
		return false
	}
	c.rmu.Lock()
	if c.turn != turnFree {
		c.rmu.Unlock()
		return false
	}
	c.turn = turnCaller
	c.leads++
	c.rmu.Unlock()
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.Unblock)
	}
	var handed []byte
	var err error
	for !w.Arrived() && ctx.Err() == nil {
		f, rerr := c.fr.ReadFrame()
		if rerr != nil {
			if errors.Is(rerr, os.ErrDeadlineExceeded) {
				c.rmu.Lock()
				cut := c.cut
				c.uncutLocked()
				c.rmu.Unlock()
				if cut {
					break // Unblock: end the turn
				}
			}
			err = rerr
			break
		}
		if wire.FrameType(f) != wire.TypeResponse {
			handed = f // Serve handles it, and reads on
			break
		}
		if herr := c.h.HandleFrame(f); herr != nil {
			err = herr
			break
		}
	}
	if stop != nil {
		stop()
	}
	c.rmu.Lock()
	c.uncutLocked()
	if handed != nil || err != nil || c.br.Buffered() > 0 || c.busy.Waiting() {
		c.handed, c.readErr = handed, err
		c.turn = turnServe
		select {
		case c.wakeServe <- struct{}{}:
		default:
		}
	} else {
		c.turn = turnFree
	}
	c.rmu.Unlock()
	return true
}

// Unblock implements transport.Leader: a caller's read in progress ends
// at once (its read deadline is set in the past).
func (c *Conn) Unblock() {
	c.rmu.Lock()
	if c.turn == turnCaller && !c.cut {
		c.cut = true
		c.nc.SetReadDeadline(aLongTimeAgo)
	}
	c.rmu.Unlock()
}

// uncutLocked clears the read deadline that Unblock set. rmu must be held.
func (c *Conn) uncutLocked() {
	if c.cut {
		c.cut = false
		c.nc.SetReadDeadline(time.Time{})
	}
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)
