package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/testnet"
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

// TestWriteReportsReset checks that a raw write to a peer that reset the
// connection fails with the reset (or a broken pipe), not success.
func TestWriteReportsReset(t *testing.T) {
	nc, peer := testnet.TCPPair(t)
	peer.(*net.TCPConn).SetLinger(0) // close with a reset
	peer.Close()
	c := Wrap(nc)
	if _, ok := c.(*rawIO); !ok {
		t.Fatal("TCP conn not wrapped")
	}
	buf := make([]byte, 1024)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Write(buf); err != nil {
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write error %v, want ECONNRESET or EPIPE", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("raw writes to a reset peer kept succeeding")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRaceDetectorSeesRawWrites checks that raw I/O keeps the race
// detector's view of the buffers: a buffer written to a socket while
// another goroutine changes it is a race it must report. It runs only
// under -race, as a child test whose failure is the expected outcome.
func TestRaceDetectorSeesRawWrites(t *testing.T) {
	if !raceEnabled {
		t.Skip("needs -race")
	}
	if os.Getenv("RAWIO_RACE_CHILD") == "1" {
		nc, peer := testnet.TCPPair(t)
		go io.Copy(io.Discard, peer)
		c := Wrap(nc)
		buf := make([]byte, 64)
		done := make(chan struct{})
		go func() { buf[0] = 1; close(done) }()
		c.Write(buf) // races with the write to buf[0] above
		<-done
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRaceDetectorSeesRawWrites$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RAWIO_RACE_CHILD=1")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "DATA RACE") {
		t.Fatalf("the race detector missed a buffer changed during a raw write:\n%s", out)
	}
}
