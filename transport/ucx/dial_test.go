//go:build ucx && cgo

package ucx_test

import (
	"context"
	"testing"
	"time"

	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/ucx"
)

type nopHandler struct{}

func (nopHandler) HandleFrame([]byte) error { return nil }
func (nopHandler) Closed(error)             {}

func bindNop(transport.Conn) transport.Handler { return nopHandler{} }

// Every dial to an idle listener completes, well within its timeout: UCX's
// connection manager does not always wake the listener's owner goroutine
// through the event fd (this failed 3 times in 300 before the owner's
// sleep was bounded).
func TestDialsToAnIdleListener(t *testing.T) {
	srv, err := ucx.New(ucx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, err := srv.Listen(context.Background(), bindNop)
	if err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for i := range 150 {
		cli, err := ucx.New(ucx.Options{DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Listen(context.Background(), bindNop); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // the listener's owner falls asleep
		start := time.Now()
		c, err := cli.Dial(context.Background(), addr, bindNop)
		worst = max(worst, time.Since(start))
		if err != nil {
			t.Errorf("dial %d: %v", i, err)
		} else {
			c.Close(nil)
		}
		cli.Close()
	}
	t.Logf("slowest of 150 dials: %v", worst)
}
