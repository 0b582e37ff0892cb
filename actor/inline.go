package actor

import "context"

// inline runs each message on the goroutine that calls Tell, before Tell
// returns. It queues nothing and owns no goroutine.
type inline[K comparable, M any] struct {
	a *Actor[K, M]
}

// submit runs msg now. If a restart is pending it waits for the new
// handler until ctx ends, and then fails with ctx.Err(): the message was
// not taken.
//
// Unlike the queued modes, inline does not check whether ctx has ended:
// the message's turn is the Tell itself, whose caller knows its own ctx,
// and the check (an interface call on ctx) costs about 4% of an Inline
// Tell, the mode whose reason to be is the least latency.
func (x *inline[K, M]) submit(ctx context.Context, _ K, msg M) error {
	a := x.a
	settled := false
	defer func() {
		if !settled { // the handler called runtime.Goexit
			a.finish()
		}
	}()
	inc, err := a.live(ctx)
	if err != nil {
		settled = true
		a.finish()
		return err
	}
	perr := a.invoke(inc, ctx, msg)
	settled = true
	a.settle(msg, perr)
	return nil
}

func (*inline[K, M]) drain(dst []entry[M]) []entry[M] { return dst }

func (*inline[K, M]) stop() {}
