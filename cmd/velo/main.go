// Command velo asks live velo instances what they offer and calls them
// from a shell: it lists the instances a discovery backend knows, lists
// and describes an instance's handlers, calls a handler with JSON (or raw
// bytes), pings, shows stats, and runs a quick benchmark.
//
//	velo instances --discovery file:/tmp/peers.json
//	velo handlers tcp://127.0.0.1:7000
//	velo describe tcp://127.0.0.1:7000 greet
//	velo call tcp://127.0.0.1:7000 greet '{"Name":"Ada"}'
//	velo ping -c 3 tcp://127.0.0.1:7000
//	velo bench -c 4 -d 5s tcp://127.0.0.1:7000 ping
//
// TARGET is an address (tcp://host:port, uds:///path, http://host:port),
// an instance id with --discovery, or, instead of TARGET, --service NAME
// with --discovery. Discovery backends: file:PATH and
// nats://host:port[/bucket]; for etcd://, the same command built in the
// etcd module (github.com/velo-messenger/velo/discovery/etcd/cmd/velo).
// docs/cli.md has the details and a session.
//
// Exit status: 0 on success, 2 for a usage error, 3 when the target
// cannot be reached, 4 when the handler fails, 1 for anything else.
package main

import "github.com/velo-messenger/velo/internal/cli"

func main() { cli.Main(nil) }
