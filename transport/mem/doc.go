// Package mem is an in-memory transport: connections are synchronous
// in-process pipes, so tests of handlers need no sockets. Instances that
// should reach each other share one Network.
//
//	net := mem.NewNetwork()
//	a, _ := velo.NewBuilder().AddTransport(mem.New(net, mem.Options{Addr: "a"})).Build(ctx)
//	b, _ := velo.NewBuilder().AddTransport(mem.New(net, mem.Options{Addr: "b"})).Build(ctx)
//
// # Faults
//
// A Network can lose and delay frames between two endpoints, named by
// their addresses, so that a test sees what its handlers and callers do on
// a bad network:
//
//	net.Drop("a", "b", 0.1)                    // one frame in ten from a to b is lost
//	net.Delay("b", "a", 50*time.Millisecond, 1) // every frame from b to a arrives 50 ms late
//	net.DelayUpTo("a", "b", 20*time.Millisecond, 0.5)
//	net.Partition("a", "b")                    // nothing gets through, either way
//	net.Heal()                                 // every fault removed
//	net.Seed(1)                                // the same draws in every run
//
// Faults act on whole frames: a connection is a byte stream, but the
// network cuts it at the frames' length prefixes, so a lost frame vanishes
// whole and the stream stays in step, as if a proxy that understood velo
// had dropped it. A delayed frame holds up the frames behind it on its
// connection: frames are never reordered, and a frame that is not delayed
// itself waits for the delayed one ahead of it, as on a link that had to
// send a packet again. Delayed frames do not lower the throughput behind
// them (up to 4 MiB held per connection end, then the writer waits), and
// are lost if their connection closes or a partition starts before they
// are due.
//
// A partition keeps connections open, as a network that went silent
// would: their ends find out by their keepalives (velo.Options
// KeepaliveTimeout), and the calls on them end at their deadline. A dial
// across a partition waits until it heals or the dial's ctx ends.
package mem
