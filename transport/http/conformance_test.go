package http_test

import (
	"context"
	"io"
	"log"
	"net"
	nethttp "net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/transport"
	velohttp "github.com/velo-messenger/velo/transport/http"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const maxFrame = 1 << 20

func factory(p velohttp.Protocol) func(*testing.T) transporttest.Factory {
	return func(*testing.T) transporttest.Factory {
		return transporttest.Factory{
			New: func() transport.Transport {
				return velohttp.New(velohttp.Options{MaxFrame: maxFrame, Protocol: p})
			},
			RawConn: rawPost,
		}
	}
}

func TestConformanceHTTP1(t *testing.T) { transporttest.Run(t, factory(velohttp.HTTP1)) }

func TestConformanceH2C(t *testing.T) { transporttest.Run(t, factory(velohttp.H2C)) }

// Through a reverse proxy: every instance is reached through a proxy of
// its own (httputil.ReverseProxy, FlushInterval -1) that it advertises.
func TestConformanceProxyH2C(t *testing.T) {
	transporttest.Run(t, proxyFactory(velohttp.H2C))
}

func TestConformanceProxyHTTP1(t *testing.T) {
	transporttest.Run(t, proxyFactory(velohttp.HTTP1))
}

func proxyFactory(p velohttp.Protocol) func(*testing.T) transporttest.Factory {
	return func(*testing.T) transporttest.Factory {
		return transporttest.Factory{
			New: func() transport.Transport {
				return &proxied{Transport: velohttp.New(velohttp.Options{MaxFrame: maxFrame, Protocol: p}), proto: p}
			},
			// Malformed input goes through a dialed connection of the
			// transport's own (the suite's default), which honours the
			// listener's goaway; see serverConn.farewell.
		}
	}
}

// proxied is an HTTP transport behind a reverse proxy of its own: Listen
// returns the proxy's URL, Close closes the proxy, then the transport.
type proxied struct {
	*velohttp.Transport
	proto velohttp.Protocol

	mu   sync.Mutex
	srv  *nethttp.Server
	rt   *nethttp.Transport
	done chan struct{}
}

func (p *proxied) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	addr, err := p.Transport.Listen(ctx, bind)
	if err != nil {
		return "", err
	}
	target, err := url.Parse(addr)
	if err != nil {
		return "", err
	}
	rt := &nethttp.Transport{DisableCompression: true}
	if p.proto == velohttp.H2C {
		var protos nethttp.Protocols
		protos.SetUnencryptedHTTP2(true)
		rt.Protocols = &protos
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host}) },
		FlushInterval: -1,
		Transport:     rt,
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	var protos nethttp.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &nethttp.Server{
		Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
			if r.ProtoMajor == 1 {
				// Without it an HTTP/1.1 server stops reading the request
				// body once the response began.
				nethttp.NewResponseController(w).EnableFullDuplex()
			}
			rp.ServeHTTP(w, r)
		}),
		Protocols: &protos,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	p.mu.Lock()
	p.srv, p.rt, p.done = srv, rt, done
	p.mu.Unlock()
	return (&url.URL{Scheme: "http", Host: ln.Addr().String(), Path: target.Path}).String(), nil
}

func (p *proxied) Close() error {
	p.mu.Lock()
	srv, rt, done := p.srv, p.rt, p.done
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
		rt.CloseIdleConnections()
	}
	return p.Transport.Close()
}

// rawPost opens a velo POST by hand: what is written goes into the
// request body unchecked.
func rawPost(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
	return rawPostWith(ctx, addr, &nethttp.Transport{})
}

func rawPostWith(ctx context.Context, addr string, rt *nethttp.Transport) (io.ReadWriteCloser, error) {
	pr, pw := io.Pipe()
	life, cancel := context.WithCancel(context.Background())
	req, err := nethttp.NewRequestWithContext(life, nethttp.MethodPost, addr, pr)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Content-Type", velohttp.ContentType)
	resp, err := (&nethttp.Client{Transport: rt}).Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	return &rawConn{pw: pw, body: resp.Body, cancel: cancel, rt: rt}, nil
}

type rawConn struct {
	pw     *io.PipeWriter
	body   io.ReadCloser
	cancel context.CancelFunc
	rt     *nethttp.Transport
}

func (c *rawConn) Read(p []byte) (int, error)  { return c.body.Read(p) }
func (c *rawConn) Write(p []byte) (int, error) { return c.pw.Write(p) }
func (c *rawConn) Close() error {
	c.cancel()
	c.pw.Close()
	c.body.Close()
	c.rt.CloseIdleConnections()
	return nil
}
