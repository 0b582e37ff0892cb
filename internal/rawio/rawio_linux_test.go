package rawio

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestRawIOWrapsSockets checks that TCP and Unix sockets get raw system
// calls, that other conns and VELO_RAW_IO=0 keep the net.Conn, so that a
// regression to the slow path shows here and not only in the bench.
func TestRawIOWrapsSockets(t *testing.T) {
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	sock := filepath.Join(t.TempDir(), "s")
	unixLn, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unixLn.Close()
	for _, c := range []struct{ network, addr string }{{"tcp", tcpLn.Addr().String()}, {"unix", sock}} {
		nc, err := net.Dial(c.network, c.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if _, ok := Wrap(nc).(*rawIO); !ok {
			t.Errorf("%s: conn not wrapped for raw I/O", c.network)
		}
		t.Setenv("VELO_RAW_IO", "0")
		if got := Wrap(nc); got != nc {
			t.Errorf("%s: wrapped despite VELO_RAW_IO=0", c.network)
		}
		os.Unsetenv("VELO_RAW_IO")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if got := Wrap(p1); got != p1 {
		t.Error("net.Pipe conn wrapped")
	}
}
