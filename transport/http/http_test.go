package http_test

import (
	"context"
	"errors"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/velo-messenger/velo/transport"
	velohttp "github.com/velo-messenger/velo/transport/http"
)

type nopHandler struct{ closed chan error }

func (nopHandler) HandleFrame([]byte) error { return nil }
func (h nopHandler) Closed(err error) {
	if h.closed != nil {
		h.closed <- err
	}
}

func nopBind(transport.Conn) transport.Handler { return nopHandler{} }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func listen(t *testing.T, opts velohttp.Options) (*velohttp.Transport, string) {
	t.Helper()
	tr := velohttp.New(opts)
	addr, err := tr.Listen(testCtx(t), nopBind)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, addr
}

func TestEndpointRefusesWhatIsNotAFrameStream(t *testing.T) {
	_, addr := listen(t, velohttp.Options{})
	c := &nethttp.Client{Transport: &nethttp.Transport{}}
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		method, ctype string
		want          int
	}{
		{nethttp.MethodGet, "", nethttp.StatusMethodNotAllowed},
		{nethttp.MethodPost, "text/plain", nethttp.StatusUnsupportedMediaType},
	} {
		req, _ := nethttp.NewRequestWithContext(testCtx(t), tc.method, addr, strings.NewReader("x"))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s with Content-Type %q: %s, want %d", tc.method, tc.ctype, resp.Status, tc.want)
		}
	}
}

func TestDialRefusesAnHTTPServerThatIsNotVelo(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, "hello")
	}))
	defer srv.Close()
	// The refusal comes with the response, or, when net/http sees the
	// server close the connection first, at the dial timeout.
	tr := velohttp.New(velohttp.Options{DialTimeout: 500 * time.Millisecond})
	defer tr.Close()
	_, err := tr.Dial(testCtx(t), srv.URL+"/velo/v1/conn", nopBind)
	if err == nil {
		t.Errorf("Dial of a plain HTTP server: %v, want a refusal", err)
	}
	for _, bad := range []string{"ftp://x/y", "127.0.0.1:80", "http://"} {
		if _, err := tr.Dial(testCtx(t), bad, nopBind); err == nil {
			t.Errorf("Dial(%q) succeeded", bad)
		}
	}
}

func TestDialTimeoutWhenNoHeadersCome(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	tr := velohttp.New(velohttp.Options{DialTimeout: 200 * time.Millisecond})
	defer tr.Close()
	start := time.Now()
	if _, err := tr.Dial(testCtx(t), srv.URL+"/velo/v1/conn", nopBind); err == nil {
		t.Fatal("Dial of a server that never answers succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial took %v with a 200ms timeout", d)
	}
}

func TestMaxConns(t *testing.T) {
	_, addr := listen(t, velohttp.Options{MaxConns: 1})
	tr := velohttp.New(velohttp.Options{})
	defer tr.Close()
	h := nopHandler{closed: make(chan error, 1)}
	c, err := tr.Dial(testCtx(t), addr, func(transport.Conn) transport.Handler { return h })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Dial(testCtx(t), addr, nopBind); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Dial beyond MaxConns: %v, want 503", err)
	}
	c.Close(nil)
	<-h.closed
}

func TestAdvertiseAndPath(t *testing.T) {
	tr := velohttp.New(velohttp.Options{Path: "/custom", Advertise: "http://proxy.example:8080/custom"})
	defer tr.Close()
	addr, err := tr.Listen(testCtx(t), nopBind)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "http://proxy.example:8080/custom" {
		t.Errorf("Listen = %q, want the advertised URL", addr)
	}
}

func TestUseAfterClose(t *testing.T) {
	tr := velohttp.New(velohttp.Options{})
	tr.Close()
	tr.Close()
	if _, err := tr.Listen(testCtx(t), nopBind); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
	if _, err := tr.Dial(testCtx(t), "http://127.0.0.1:1/x", nopBind); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Dial after Close: %v", err)
	}
}
