// Package natskv is a discovery backend over a NATS JetStream key-value
// bucket, for instances spread over hosts that share a NATS server or
// cluster.
//
// Each instance's entry is one key (its id in hexadecimal) whose value is
// its peer.Info as JSON. The bucket is created on first use if missing,
// with a TTL (the stream's MaxAge): every write of a key lives TTL, and a
// registration writes its key again every Refresh (TTL/3 by default), so
// an instance that dies without withdrawing disappears within TTL. On
// nats-server 2.11 and later the bucket also keeps limit markers, so that
// watchers are told when a key expires. Close deletes the key at once.
//
// The NATS connection is the caller's. When the server goes away, lookups
// fail within Options.Timeout (the messenger then keeps the address it
// had); registrations and watches retry, and write their key again and
// resynchronise as soon as the connection is back, creating the bucket
// again if the server lost it.
package natskv
