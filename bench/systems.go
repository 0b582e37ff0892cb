package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// A System is one way of moving a payload that the bench measures side by
// side with the others: velo with one call pattern over one transport, or a
// peer (gRPC, net/rpc, NATS, the plain TCP floor). Its server runs in a
// child process (Server names it in the servers table; several systems may
// share one) and its client in the bench process (Dial).
type System struct {
	// Name identifies the system in flags, tables and the CSV: the family,
	// and for velo "/transport" ("velo-unary/tcp").
	Name string
	// Family is the system without its transport ("velo-unary", "grpc-go").
	Family string
	// Transport is the velo transport; empty for the peers and the floor.
	Transport string
	// Peer marks the systems velo is compared with (the floor aside).
	Peer bool
	// Server is the server process this system's clients talk to.
	Server string
	// Modes are the measurements the system takes part in.
	Modes []string
	// PerWorker says the client is not safe for concurrent use: with n
	// calls in flight the bench dials n clients, one per worker.
	PerWorker bool
	// Dial connects a client to the server whose Addr is addr. The client
	// implements RoundTripper when Modes has latency or concurrent, and
	// Streamer when it has stream.
	Dial func(ctx context.Context, e env, addr string) (Client, error)
}

// The measurements (-modes).
const (
	modeLatency    = "latency"    // one call at a time
	modeConcurrent = "concurrent" // n calls in flight
	modeStream     = "stream"     // one-way messages, counted by the server
)

var allModes = []string{modeLatency, modeConcurrent, modeStream}

// Client is a connection of a system to its server.
type Client interface {
	// Close releases the client's connections and goroutines.
	Close() error
}

// RoundTripper makes request-response round trips: it sends the payload
// and waits until its echo (or the acknowledgement) came back. Safe for
// concurrent use unless the system is PerWorker.
type RoundTripper interface {
	Client
	RoundTrip(ctx context.Context, payload []byte) error
}

// Streamer sends one-way messages. Stream sends n messages with the
// payload, then waits until the server reports having received all n:
// the time it takes is the time to deliver them, not to queue them.
type Streamer interface {
	Client
	Stream(ctx context.Context, payload []byte, n int) error
}

// env is what the servers and clients learn from the bench, besides the
// server's address: where the NATS server runs, for the systems that go
// through it.
type env struct {
	natsURL  string
	maxFrame int // the frame limit of the transports that take one; 0: their default
}

// floorName is the system every other one is compared with.
const floorName = "tcp-floor"

// floorRawName is the floor with the raw socket calls that velo's stream
// transports use (internal/rawio): neither the floor nor a peer, shown so
// that what velo gains from its I/O path is visible beside the floor.
const floorRawName = "tcp-floor-raw"

// The peer families, which are also their system names.
const (
	netRPCName  = "net-rpc"
	grpcName    = "grpc-go"
	grpcTLSName = "grpc-go+tls" // over mutual TLS
	natsReqName = "nats-req"
	natsPubName = "nats-pub"
	// grpcStreamName is grpc-go server-streaming, beside velo-stream.
	grpcStreamName = "grpc-go-stream"
)

// veloTransports are the velo transports in the order the report shows them.
var veloTransports = []string{"tcp", tcpTLS, "uds", "http", "h2c", "grpc", "nats"}

// tcpTLS is velo's tcp transport under mutual TLS (tlsbench.go).
const tcpTLS = "tcp+tls"

// veloFamily is one velo call pattern, measured over each transport.
type veloFamily struct {
	name     string
	modes    []string
	dial     func(m *veloConn) Client
	optional bool // only when -systems names it
}

var veloFamilies = []veloFamily{
	{name: "velo-unary", modes: []string{modeLatency, modeConcurrent}, dial: func(c *veloConn) Client { return &veloUnary{c, echoHandler} }},
	{name: "velo-unary-inline", modes: []string{modeLatency, modeConcurrent}, dial: func(c *veloConn) Client { return &veloUnary{c, echoInlineHandler} }, optional: true},
	{name: "velo-typed", modes: []string{modeLatency, modeConcurrent}, dial: func(c *veloConn) Client { return &veloTyped{c} }},
	{name: "velo-amsync", modes: []string{modeLatency, modeConcurrent}, dial: func(c *veloConn) Client { return &veloAMSync{c} }},
	{name: "velo-amsend", modes: []string{modeStream}, dial: func(c *veloConn) Client { return &veloAMSend{c, sinkHandler} }},
	{name: "velo-amsend-inline", modes: []string{modeStream}, dial: func(c *veloConn) Client { return &veloAMSend{c, sinkInlineHandler} }, optional: true},
	{name: "velo-stream", modes: []string{modeStream}, dial: func(c *veloConn) Client { return &veloStream{c} }},
}

// allSystems lists every system in the order the report shows them: the
// floor, the peers, then velo family by family, transport by transport.
func allSystems() []System {
	rr := []string{modeLatency, modeConcurrent}
	out := []System{
		{Name: floorName, Family: floorName, Server: floorName, Modes: allModes, PerWorker: true, Dial: dialFloor},
		{Name: floorRawName, Family: floorRawName, Server: floorRawName, Modes: allModes, PerWorker: true, Dial: dialFloorRaw},
		{Name: netRPCName, Family: netRPCName, Peer: true, Server: netRPCName, Modes: rr, Dial: dialNetRPC},
		{Name: grpcName, Family: grpcName, Peer: true, Server: grpcName, Modes: rr, Dial: dialGRPC},
		{Name: grpcTLSName, Family: grpcTLSName, Peer: true, Server: grpcTLSName, Modes: rr, Dial: dialGRPCTLS},
		{Name: natsReqName, Family: natsReqName, Peer: true, Server: natsReqName, Modes: rr, Dial: dialNATSReq},
		{Name: natsPubName, Family: natsPubName, Peer: true, Server: natsPubName, Modes: []string{modeStream}, Dial: dialNATSPub},
		{Name: grpcStreamName, Family: grpcStreamName, Peer: true, Server: grpcName, Modes: []string{modeStream}, Dial: dialGRPCStream},
	}
	for _, f := range veloFamilies {
		for _, t := range veloTransports {
			out = append(out, System{
				Name:      f.name + "/" + t,
				Family:    f.name,
				Transport: t,
				Server:    veloServerFor(t),
				Modes:     f.modes,
				Dial:      dialVelo(t, f.dial),
			})
		}
	}
	return out
}

// isOptional says whether a system runs only when -systems names it.
func isOptional(s System) bool {
	for _, f := range veloFamilies {
		if f.name == s.Family {
			return f.optional
		}
	}
	return false
}

// selectSystems picks systems by comma-separated names, each a family
// ("velo-unary": over every selected transport) or a system
// ("velo-unary/tcp"); empty means every family that is not optional.
// transports (comma-separated; empty: all) restricts the velo systems.
func selectSystems(names, transports string) ([]System, error) {
	all := allSystems()
	keepT := make(map[string]bool)
	if strings.TrimSpace(transports) == "" {
		for _, t := range veloTransports {
			keepT[t] = true
		}
	} else {
		for _, t := range splitList(transports) {
			if !slices.Contains(veloTransports, t) {
				return nil, fmt.Errorf("unknown transport %q (have %s)", t, strings.Join(veloTransports, ", "))
			}
			keepT[t] = true
		}
	}
	want := make(map[string]bool)
	if strings.TrimSpace(names) == "" {
		for _, s := range all {
			if !isOptional(s) {
				want[s.Name] = true
			}
		}
	} else {
		for _, n := range splitList(names) {
			found := false
			for _, s := range all {
				if s.Name == n || s.Family == n {
					want[s.Name], found = true, true
				}
			}
			if !found {
				return nil, fmt.Errorf("unknown system %q (have %s)", n, familyNames())
			}
		}
	}
	var out []System
	for _, s := range all {
		if want[s.Name] && (s.Transport == "" || keepT[s.Transport]) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-systems %q with -transports %q selects nothing", names, transports)
	}
	return out, nil
}

func findSystem(systems []System, name string) (System, bool) {
	for _, s := range systems {
		if s.Name == name {
			return s, true
		}
	}
	return System{}, false
}

// familyNames lists the families, for usage and errors.
func familyNames() string {
	var names []string
	for _, s := range allSystems() {
		if !slices.Contains(names, s.Family) {
			names = append(names, s.Family)
		}
	}
	return strings.Join(names, ", ")
}

func (s System) has(mode string) bool { return slices.Contains(s.Modes, mode) }

// isVelo says whether the system is one of velo's (not the floor, not a peer).
func (s System) isVelo() bool { return s.Transport != "" }

// splitList splits a comma-separated list, trimming blanks and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
