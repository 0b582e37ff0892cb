package main

import (
	"context"
	"os"
	"strconv"
)

// Server is a running server of one kind, in a child process of the bench
// (or in process, in the tests and micro-benchmarks).
type Server interface {
	// Addr is what the clients need to reach the server, as one line of
	// text (host:port, a JSON peer.Info, a NATS subject...).
	Addr() string
	// Close stops the server and waits for its goroutines.
	Close() error
}

// serverKind is one kind of server process. Several systems may talk to
// one: the velo server of a transport answers every velo family.
type serverKind struct {
	name  string
	nats  bool // connects to the NATS server (env.natsURL)
	serve func(ctx context.Context, e env) (Server, error)
}

// natsServerName is the NATS server itself, which the NATS peers and velo
// over NATS go through; it runs in a child process of its own too.
const natsServerName = "nats-server"

// serverKinds lists every server the bench knows how to run.
func serverKinds() []serverKind {
	kinds := []serverKind{
		{name: floorName, serve: serveFloor},
		{name: floorRawName, serve: serveFloorRaw},
		{name: netRPCName, serve: serveNetRPC},
		{name: grpcName, serve: serveGRPC},
		{name: grpcTLSName, serve: serveGRPCTLS},
		{name: natsServerName, serve: serveNATSServer},
		{name: natsReqName, nats: true, serve: serveNATSReq},
		{name: natsPubName, nats: true, serve: serveNATSPub},
	}
	for _, t := range veloTransports {
		if name := veloServerFor(t); name == "velo/"+t {
			kinds = append(kinds, serverKind{name: name, nats: t == "nats", serve: serveVelo(t)})
		}
	}
	return kinds
}

func findServerKind(name string) (serverKind, bool) {
	for _, k := range serverKinds() {
		if k.name == name {
			return k, true
		}
	}
	return serverKind{}, false
}

// veloServerFor names the velo server of a transport. h2c shares the http
// server: an HTTP listener accepts both, the client picks the protocol.
func veloServerFor(transport string) string {
	if transport == "h2c" {
		transport = "http"
	}
	return "velo/" + transport
}

// natsURLEnv passes the NATS server's URL to the server processes that
// connect to it.
const natsURLEnv = "VELO_BENCH_NATS_URL"

// envFromProcess is the env of a server process, as its parent set it.
func envFromProcess() env {
	mf, _ := strconv.Atoi(os.Getenv(maxFrameEnv))
	return env{natsURL: os.Getenv(natsURLEnv), maxFrame: mf}
}

// maxFrameEnv passes env.maxFrame to the server processes (-mode large).
const maxFrameEnv = "VELO_BENCH_MAX_FRAME"

// noReuseEnv, set, makes the velo servers' echo handler own its payloads
// (no ReusePayload): -mode large -reuse=false.
const noReuseEnv = "VELO_BENCH_NO_REUSE"
