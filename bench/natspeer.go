package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS core through an embedded nats-server, which runs in a child process
// of its own: request/reply (a responder process answers with the payload)
// and publish/subscribe (a subscriber process counts the messages).

const (
	natsEchoSubject    = "velobench.echo"
	natsStreamSubject  = "velobench.stream"
	natsBarrierSubject = "velobench.stream.count"
)

// The server's limits are raised over its defaults so that the largest
// payload fits in one message and a subscriber that lags behind a burst
// of them (every process shares one CPU) is not cut off as a slow consumer.
const (
	natsMaxPayload    = 8 << 20
	natsMaxPending    = 1 << 30
	natsWriteDeadline = 30 * time.Second
)

// barrierTimeout bounds how long a stream's barrier waits for the count.
const barrierTimeout = time.Minute

func serveNATSServer(context.Context, env) (Server, error) {
	s, err := natsserver.NewServer(&natsserver.Options{
		Host:          "127.0.0.1",
		Port:          natsserver.RANDOM_PORT,
		NoLog:         true,
		NoSigs:        true,
		MaxPayload:    natsMaxPayload,
		MaxPending:    natsMaxPending,
		WriteDeadline: natsWriteDeadline,
	})
	if err != nil {
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats-server not ready within 10s")
	}
	return natsServerProc{s}, nil
}

type natsServerProc struct{ s *natsserver.Server }

func (p natsServerProc) Addr() string { return p.s.ClientURL() }

func (p natsServerProc) Close() error {
	p.s.Shutdown()
	p.s.WaitForShutdown()
	return nil
}

func connectNATS(e env, name string) (*nats.Conn, error) {
	if e.natsURL == "" {
		return nil, errors.New("no NATS server URL")
	}
	return nats.Connect(e.natsURL, nats.Name(name), nats.Timeout(10*time.Second))
}

// natsProc is a server process that is a NATS client: its Addr is the
// subject it serves.
type natsProc struct {
	nc      *nats.Conn
	subject string
}

func (p natsProc) Addr() string { return p.subject }

func (p natsProc) Close() error {
	p.nc.Close()
	return nil
}

// subscribe subscribes with no limit on the messages pending delivery:
// the default limits would drop messages of a burst as a slow consumer.
func subscribe(nc *nats.Conn, subject string, h nats.MsgHandler) error {
	sub, err := nc.Subscribe(subject, h)
	if err != nil {
		return err
	}
	return sub.SetPendingLimits(-1, -1)
}

func serveNATSReq(_ context.Context, e env) (Server, error) {
	nc, err := connectNATS(e, "velo-bench-responder")
	if err != nil {
		return nil, err
	}
	err = subscribe(nc, natsEchoSubject, func(m *nats.Msg) { m.Respond(m.Data) })
	if err == nil {
		err = nc.Flush() // the subscription is known to the server before we answer
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return natsProc{nc, natsEchoSubject}, nil
}

func serveNATSPub(_ context.Context, e env) (Server, error) {
	nc, err := connectNATS(e, "velo-bench-subscriber")
	if err != nil {
		return nil, err
	}
	t := newTally()
	err = subscribe(nc, natsStreamSubject, func(*nats.Msg) { t.add() })
	if err == nil {
		// The barrier runs on its subscription's own goroutine, so it may
		// wait while the stream's goroutine goes on counting.
		err = subscribe(nc, natsBarrierSubject, func(m *nats.Msg) {
			ctx, cancel := context.WithTimeout(context.Background(), barrierTimeout)
			defer cancel()
			n, err := parseCount(m.Data)
			if err == nil {
				err = t.wait(ctx, n)
			}
			if err != nil {
				m.Respond([]byte(err.Error()))
				return
			}
			m.Respond(m.Data)
		})
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return natsProc{nc, natsStreamSubject}, nil
}

func dialNATSReq(_ context.Context, e env, subject string) (Client, error) {
	nc, err := connectNATS(e, "velo-bench-requester")
	if err != nil {
		return nil, err
	}
	return &natsReqClient{nc: nc, subject: subject}, nil
}

type natsReqClient struct {
	nc      *nats.Conn
	subject string
}

func (c *natsReqClient) RoundTrip(ctx context.Context, payload []byte) error {
	m, err := c.nc.RequestWithContext(ctx, c.subject, payload)
	if err != nil {
		return err
	}
	if len(m.Data) != len(payload) {
		return fmt.Errorf("%w: %d bytes, want %d", errShortEcho, len(m.Data), len(payload))
	}
	return nil
}

func (c *natsReqClient) Close() error {
	c.nc.Close()
	return nil
}

func dialNATSPub(_ context.Context, e env, subject string) (Client, error) {
	nc, err := connectNATS(e, "velo-bench-publisher")
	if err != nil {
		return nil, err
	}
	return &natsPubClient{nc: nc, subject: subject}, nil
}

type natsPubClient struct {
	nc      *nats.Conn
	subject string
}

// Stream publishes n messages, flushes, and asks the subscriber for the
// count.
func (c *natsPubClient) Stream(ctx context.Context, payload []byte, n int) error {
	for range n {
		if err := c.nc.Publish(c.subject, payload); err != nil {
			return err
		}
	}
	if err := c.nc.Flush(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, barrierTimeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, natsBarrierSubject, appendCount(nil, n))
	if err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	if got, err := parseCount(m.Data); err != nil || got != int64(n) {
		return fmt.Errorf("barrier: subscriber answered %q for %d messages", m.Data, n)
	}
	return nil
}

func (c *natsPubClient) Close() error {
	c.nc.Close()
	return nil
}
