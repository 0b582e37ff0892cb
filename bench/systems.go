package main

import (
	"context"
	"fmt"
	"strings"
)

// A System is one way of making a request-response round trip that the
// bench measures side by side with the others. Its server runs in a child
// process (Serve) and its client in the bench process (Dial). A peer system
// (gRPC, NATS, ...) is one more implementation added to allSystems.
type System interface {
	// Name identifies the system in flags, tables and the CSV.
	Name() string
	// Serve starts the server side: an echo of the payload. It runs in the
	// child process (or in process, in the micro-benchmarks).
	Serve(ctx context.Context) (Server, error)
	// Dial connects a client to the server whose Addr is addr. Every round
	// trip of the client sends payload and expects it back.
	Dial(ctx context.Context, addr string, payload []byte) (Client, error)
}

// Server is a running echo server.
type Server interface {
	// Addr is what Dial needs to reach the server, as one line of text
	// (host:port, a JSON peer.Info, ...).
	Addr() string
	// Close stops the server and waits for its goroutines.
	Close() error
}

// Client makes round trips to one server, one at a time (never called
// concurrently).
type Client interface {
	// RoundTrip sends the payload and waits until its echo came back.
	RoundTrip(ctx context.Context) error
	// Close releases the client's connections and goroutines.
	Close() error
}

// floorName is the system every other one is compared with.
const floorName = "tcp-floor"

// allSystems lists the systems in the order the report shows them; the
// floor comes first.
func allSystems() []System {
	return []System{
		floorSystem{},
		veloSystem{name: "velo-unary"},
		veloSystem{name: "velo-unary-inline", inline: true},
	}
}

// lookupSystems picks systems by comma-separated names; empty means all.
func lookupSystems(names string) ([]System, error) {
	all := allSystems()
	if strings.TrimSpace(names) == "" {
		return all, nil
	}
	var out []System
	seen := make(map[string]bool)
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		s := findSystem(all, n)
		if s == nil {
			return nil, fmt.Errorf("unknown system %q (have %s)", n, systemNames(all))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, s)
		}
	}
	return out, nil
}

func findSystem(systems []System, name string) System {
	for _, s := range systems {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func systemNames(systems []System) string {
	names := make([]string, len(systems))
	for i, s := range systems {
		names[i] = s.Name()
	}
	return strings.Join(names, ", ")
}
