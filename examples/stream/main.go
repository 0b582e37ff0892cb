// Command stream shows velo's streams: a consumer instance opens a stream
// and hands its handle to a producer instance, which attaches and sends
// typed items; the consumer reads them in order with a range loop. Flow
// control holds the producer to the consumer's window, and the consumer
// may cancel the stream half-way (-cancel-after), which the producer sees
// as ErrCanceled on its next Send.
//
// Usage:
//
//	go run ./examples/stream [-items 100000] [-window 65536] [-cancel-after 0]
//
// Both instances run in this process and talk over TCP on loopback, as two
// processes would.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/velo-messenger/velo"
)

// Token is one item of the stream, as a model server would send them.
type Token struct {
	Seq  int
	Text string
}

// produceHandler is the producer's handler: it attaches to the stream
// whose handle it is given and sends items from a goroutine of its own.
const produceHandler = "produce"

// produceReq asks for n tokens on the stream h.
type produceReq struct {
	Stream velo.StreamHandle
	N      int
}

func main() {
	items := flag.Int("items", 100000, "tokens to stream")
	window := flag.Int("window", 64<<10, "the consumer's window, in bytes")
	cancelAfter := flag.Int("cancel-after", 0, "cancel the stream after this many tokens (0: read to the end)")
	flag.Parse()
	if err := run(os.Stdout, *items, *window, *cancelAfter); err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, items, window, cancelAfter int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	producer, err := velo.NewBuilder().Build(ctx)
	if err != nil {
		return err
	}
	defer shutdown(producer)
	consumer, err := velo.NewBuilder().Build(ctx)
	if err != nil {
		return err
	}
	defer shutdown(consumer)

	sent := make(chan error, 1)
	producer.RegisterHandler(velo.TypedUnaryHandler(produceHandler, func(ctx context.Context, c *velo.TypedContext[produceReq]) (struct{}, error) {
		s, err := velo.AttachStream[Token](ctx, producer, c.Input.Stream)
		if err != nil {
			return struct{}{}, err
		}
		go func() {
			ctx := context.Background()
			for i := range c.Input.N {
				if err := s.Send(ctx, Token{Seq: i, Text: "tok"}); err != nil {
					sent <- fmt.Errorf("producer stopped after %d tokens: %w", i, err)
					return
				}
			}
			sent <- s.Close()
		}()
		return struct{}{}, nil
	}).Build())
	if err := consumer.RegisterPeer(producer.PeerInfo()); err != nil {
		return err
	}

	r, err := velo.OpenStream[Token](consumer, velo.StreamOptions{Window: window})
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := velo.TypedUnary[struct{}](consumer, produceHandler).
		Payload(produceReq{Stream: r.Handle(), N: items}).Instance(producer.InstanceID()).Send(ctx); err != nil {
		return err
	}
	got := 0
	for tok, err := range r.All(ctx) {
		if err != nil {
			return fmt.Errorf("after %d tokens: %w", got, err)
		}
		if tok.Seq != got {
			return fmt.Errorf("token %d arrived as number %d", got, tok.Seq)
		}
		got++
		if got == cancelAfter {
			r.Cancel()
			break
		}
	}
	took := time.Since(start)
	fmt.Fprintf(out, "consumer: %d tokens in order in %v (%.0f tokens/s), window %d B\n",
		got, took.Round(time.Millisecond), float64(got)/took.Seconds(), window)
	err = <-sent
	switch {
	case cancelAfter > 0 && errors.Is(err, velo.ErrCanceled):
		fmt.Fprintf(out, "producer: %v\n", err)
		return nil
	case err != nil:
		return err
	}
	fmt.Fprintln(out, "producer: closed the stream")
	return nil
}

func shutdown(m *velo.Messenger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.Shutdown(ctx)
}
