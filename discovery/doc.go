// Package discovery defines how a messenger finds instances it has not been
// told about. A send to an unknown instance asks the PeerDiscovery given to
// the builder; an instance registers itself when it starts and withdraws
// when it shuts down.
//
// The messenger caches what Lookup answers in its peer table and asks
// again only when a connection to a discovered instance fails (the
// instance may have restarted elsewhere), so a backend sees one Lookup per
// peer and failure, not one per send.
//
// Backends live in subpackages: file (a JSON file shared by the processes
// of one host), natskv (a NATS JetStream key-value bucket), and etcd (an
// etcd v3 cluster; a module of its own, so that the core does not depend
// on etcd). Memory, here, serves instances within one process. Backends
// that can report changes as they happen also implement Watcher.
// discoverytest holds the conformance suite every backend passes;
// docs/discovery.md says how to write a new one.
package discovery
