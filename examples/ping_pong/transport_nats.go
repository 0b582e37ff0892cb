//go:build nats

package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/velo-messenger/velo/transport"
	velonats "github.com/velo-messenger/velo/transport/nats"
)

// natsURLEnv names the NATS server both processes connect to. The parent
// sets it for the child when it starts an embedded server itself.
const natsURLEnv = "VELO_NATS_URL"

// Built with -tags nats only, so that the default build links no NATS.
func init() {
	transports["nats"] = func(*tls.Config) transport.Transport {
		return velonats.New(velonats.Options{URL: os.Getenv(natsURLEnv)})
	}
	prepare["nats"] = startEmbeddedNATS
}

// startEmbeddedNATS starts a nats-server in this process on a loopback
// port chosen by the system, unless $VELO_NATS_URL names one already, and
// sets $VELO_NATS_URL, which the server child inherits.
func startEmbeddedNATS() (stop func(), err error) {
	if os.Getenv(natsURLEnv) != "" {
		return func() {}, nil
	}
	s, err := natsserver.NewServer(&natsserver.Options{
		Host:   "127.0.0.1",
		Port:   natsserver.RANDOM_PORT,
		NoLog:  true,
		NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats-server not ready within 10s")
	}
	if err := os.Setenv(natsURLEnv, s.ClientURL()); err != nil {
		s.Shutdown()
		return nil, err
	}
	return func() {
		s.Shutdown()
		s.WaitForShutdown()
	}, nil
}
