//go:build ucx

package main

import (
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/ucx"
)

// Built with -tags ucx (make bench adds it when libucx is installed): velo
// over UCX, over tcp ("ucx") and over shared memory ("ucx-sm"), kept to
// the loopback device, as every system of the bench talks over loopback.
func init() {
	veloTransports = append(veloTransports, "ucx", "ucx-sm")
	taggedTransports["ucx"] = func(e env) (transport.Transport, error) {
		return ucx.New(ucx.Options{Transports: ucx.DefaultTransports, NetDevices: "lo", MaxFrame: e.maxFrame})
	}
	taggedTransports["ucx-sm"] = func(e env) (transport.Transport, error) {
		return ucx.New(ucx.Options{Transports: ucx.SharedMemory, NetDevices: "lo", MaxFrame: e.maxFrame})
	}
}
