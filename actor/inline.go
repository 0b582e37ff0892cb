package actor

import "context"

// inline runs each message on the goroutine that calls Tell, before Tell
// returns. It queues nothing and owns no goroutine.
type inline[K comparable, M any] struct {
	a *Actor[K, M]
}

// submit runs msg now. If a restart is pending it waits for the new
// handler until ctx ends, and then fails with ctx.Err(): the message was
// not taken. A message whose ctx ended before its turn came is expired.
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
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			settled = true
			a.expire(msg, err)
			return nil
		}
	}
	perr := a.invoke(inc, ctx, msg)
	settled = true
	a.settle(msg, perr)
	return nil
}

func (*inline[K, M]) drain(dst []entry[M]) []entry[M] { return dst }

func (*inline[K, M]) stop() {}
