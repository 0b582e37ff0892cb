// Package etcd is a discovery backend over etcd v3, for instances spread
// over hosts that share an etcd cluster.
//
// Each instance's entry is one key, Options.Prefix followed by its id in
// hexadecimal, whose value is its peer.Info as JSON. The key is attached to
// a lease of Options.TTL that the registration keeps alive (clientv3
// KeepAlive) while the instance runs, so an instance that dies without
// withdrawing disappears when its lease expires, within TTL. Close revokes
// the lease, which deletes the key at once.
//
// When etcd goes away for longer than the TTL, the lease expires and the
// client closes the keepalive; the registration then grants a new lease and
// puts its key again as soon as etcd answers. While etcd is away, lookups
// fail within Options.Timeout (the messenger then keeps the address it
// had), and watches resume (or list again) when it is back.
//
// This package is a Go module of its own,
// github.com/velo-messenger/velo/discovery/etcd, so that programs that use
// velo without etcd do not download or link it.
package etcd
