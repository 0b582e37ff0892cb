package velo_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/internal/testcerts"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
	velogrpc "github.com/velo-messenger/velo/transport/grpc"
	velohttp "github.com/velo-messenger/velo/transport/http"
	velonats "github.com/velo-messenger/velo/transport/nats"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

// tlsInstance starts an instance on TCP with the TLS config c.
func tlsInstance(t *testing.T, c *tls.Config, opts velo.Options, hs ...*velo.HandlerBuilder) *velo.Messenger {
	t.Helper()
	b := velo.NewBuilder().AddTransport(tcp.New(tcp.Options{TLS: c})).Options(opts)
	for _, h := range hs {
		b.Handle(h.Build())
	}
	return build(t, b)
}

// whoCalls is a handler "who" that answers the caller's identity and
// counts its runs.
func whoCalls(runs *atomic.Int64) *velo.HandlerBuilder {
	return velo.UnaryHandler("who", func(_ context.Context, c *velo.Context) ([]byte, error) {
		runs.Add(1)
		return []byte(c.Identity), nil
	})
}

// callWho calls "who" on to from m.
func callWho(m *velo.Messenger, to peer.ID) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := m.Unary("who").Instance(to).Send(ctx)
	return string(b), err
}

// TestTLSIdentityAndAuthorize: under mutual TLS a handler sees the
// caller's certificate identity; a handler that Authorize allows only to
// X is reachable by X and refused to Y with ErrPermissionDenied across the
// wire, and never runs for Y.
func TestTLSIdentityAndAuthorize(t *testing.T) {
	ca := testcerts.NewCA(t, "velo test CA")
	const x, y = "spiffe://velo.test/x", "spiffe://velo.test/y"
	var whoRuns, secretRuns atomic.Int64
	authorize := func(_ context.Context, identity, handler string) error {
		if handler == "secret" && identity != x {
			return errors.New("secret is for x only")
		}
		return nil
	}
	s := tlsInstance(t, testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/server"})),
		velo.Options{Authorize: authorize}, whoCalls(&whoRuns),
		velo.UnaryHandler("secret", func(context.Context, *velo.Context) ([]byte, error) {
			secretRuns.Add(1)
			return []byte("s3cr3t"), nil
		}))
	cx := tlsInstance(t, testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: x})), velo.Options{})
	cy := tlsInstance(t, testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{DNS: []string{"y.velo.test"}, URI: y})), velo.Options{})
	for _, c := range []*velo.Messenger{cx, cy} {
		if err := c.RegisterPeer(s.PeerInfo()); err != nil {
			t.Fatal(err)
		}
	}
	ctx := testCtx(t)
	for _, tc := range []struct {
		m    *velo.Messenger
		want string
	}{{cx, x}, {cy, y}} {
		got, err := callWho(tc.m, s.InstanceID())
		if err != nil || got != tc.want {
			t.Errorf("who from %s = %q, %v; want its identity", tc.want, got, err)
		}
	}
	if got, err := cx.Unary("secret").Instance(s.InstanceID()).Send(ctx); err != nil || string(got) != "s3cr3t" {
		t.Errorf("secret from x: %q, %v", got, err)
	}
	_, err := cy.Unary("secret").Instance(s.InstanceID()).Send(ctx)
	if !errors.Is(err, velo.ErrPermissionDenied) || !velo.NotDelivered(err) {
		t.Errorf("secret from y: %v, want ErrPermissionDenied, not delivered", err)
	}
	if err := cy.AMSync("secret").Instance(s.InstanceID()).Send(ctx); !errors.Is(err, velo.ErrPermissionDenied) {
		t.Errorf("secret from y by AMSync: %v, want ErrPermissionDenied", err)
	}
	if secretRuns.Load() != 1 {
		t.Errorf("secret ran %d times, want once (for x)", secretRuns.Load())
	}
	if s.Denied() != 2 {
		t.Errorf("Denied() = %d, want 2", s.Denied())
	}
}

// TestAuthorizeCoversSystemHandlers: velo's own handlers go through
// Authorize too: a policy that refuses an identity everything refuses it
// the handler list and ping as well.
func TestAuthorizeCoversSystemHandlers(t *testing.T) {
	ca := testcerts.NewCA(t, "velo test CA")
	const outsider = "spiffe://velo.test/outsider"
	var asked sync.Map
	s := tlsInstance(t, testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/server"})),
		velo.Options{Authorize: func(_ context.Context, identity, handler string) error {
			asked.Store(handler, true)
			if identity == outsider {
				return errors.New("outsiders may call nothing")
			}
			return nil
		}}, echoHandler())
	c := tlsInstance(t, testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: outsider})), velo.Options{})
	if err := c.RegisterPeer(s.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if _, err := c.ListHandlers(ctx, s.InstanceID()); !errors.Is(err, velo.ErrPermissionDenied) {
		t.Errorf("ListHandlers by an outsider: %v, want ErrPermissionDenied", err)
	}
	if _, err := c.Ping(ctx, s.InstanceID()); !errors.Is(err, velo.ErrPermissionDenied) {
		t.Errorf("Ping by an outsider: %v, want ErrPermissionDenied", err)
	}
	for _, h := range []string{"_list_handlers", "_ping"} {
		if _, ok := asked.Load(h); !ok || !velo.IsSystemHandler(h) {
			t.Errorf("Authorize was not asked about %s", h)
		}
	}
	if _, ok := asked.Load("_hello"); ok {
		t.Error("Authorize was asked about the handshake")
	}
}

// TestTLSConfigBelow12Refused: every transport that takes TLS refuses a
// config that allows a version below TLS 1.2, before it listens.
func TestTLSConfigBelow12Refused(t *testing.T) {
	old := &tls.Config{MinVersion: tls.VersionTLS11}
	for _, tr := range tlsTransports {
		_, err := velo.NewBuilder().AddTransport(tr.mk(old, 0)).Build(context.Background())
		if err == nil || !strings.Contains(err.Error(), "below TLS 1.2") {
			t.Errorf("%s: Build with MinVersion TLS 1.1: %v, want a refusal", tr.name, err)
		}
	}
	if err := velonats.New(velonats.Options{TLS: old}).Validate(); err == nil || !strings.Contains(err.Error(), "below TLS 1.2") {
		t.Errorf("nats: Validate with MinVersion TLS 1.1: %v, want a refusal", err)
	}
}

// logBuffer collects a messenger's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// tlsTransports are the network transports that take a TLS config, each
// made with a bound on the TLS handshake of the connections it accepts.
var tlsTransports = []struct {
	name string
	mk   func(c *tls.Config, handshake time.Duration) transport.Transport
	// logs: a failed TLS handshake is logged at Warn by the messenger
	// (http's are logged by net/http's error log, at Debug).
	logs bool
}{
	{"tcp", func(c *tls.Config, _ time.Duration) transport.Transport { return tcp.New(tcp.Options{TLS: c}) }, true},
	{"http", func(c *tls.Config, d time.Duration) transport.Transport {
		return velohttp.New(velohttp.Options{TLS: c, DialTimeout: d})
	}, false},
	{"grpc", func(c *tls.Config, d time.Duration) transport.Transport {
		return velogrpc.New(velogrpc.Options{TLS: c, DialTimeout: d})
	}, false},
}

// TestTLSRefusals: an instance under mutual TLS refuses a plaintext
// client, a certificate from another CA, an expired certificate, an
// identity Authorize does not allow, and a handshake that never comes
// (within HandshakeTimeout); a rotated certificate serves new connections
// while the old ones keep working; and a good peer keeps its latency
// meanwhile. On every transport that takes TLS.
func TestTLSRefusals(t *testing.T) {
	for _, tr := range tlsTransports {
		t.Run(tr.name, func(t *testing.T) { testTLSRefusals(t, tr.mk, tr.logs) })
	}
}

func testTLSRefusals(t *testing.T, mk func(*tls.Config, time.Duration) transport.Transport, logged bool) {
	ca, other := testcerts.NewCA(t, "velo test CA"), testcerts.NewCA(t, "another CA")
	var logs logBuffer
	var current atomic.Pointer[tls.Certificate]
	first := ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/server"})
	current.Store(&first)
	serverTLS := testcerts.Mutual(ca, first)
	serverTLS.Certificates = nil
	serverTLS.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil }
	const evil = "spiffe://velo.test/evil"
	var runs atomic.Int64
	s := build(t, velo.NewBuilder().
		AddTransport(mk(serverTLS, 300*time.Millisecond)).
		Logger(slog.New(slog.NewTextHandler(&logs, nil))).
		Options(velo.Options{HandshakeTimeout: 300 * time.Millisecond, Authorize: func(_ context.Context, id, _ string) error {
			if id == evil {
				return errors.New("not this one")
			}
			return nil
		}}).
		Handle(whoCalls(&runs).Build()))
	good := build(t, velo.NewBuilder().AddTransport(mk(testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/good"})), 0)))
	if err := good.RegisterPeer(s.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	p50 := func(n int) time.Duration {
		var took []time.Duration
		for range n {
			start := time.Now()
			if _, err := callWho(good, s.InstanceID()); err != nil {
				t.Fatalf("good peer: %v", err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took[len(took)/2]
	}
	before := p50(200)

	// The good peer keeps calling while the attacks run.
	stop := make(chan struct{})
	var during []time.Duration
	var goodErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		repeat(stop, func() bool {
			start := time.Now()
			if _, err := callWho(good, s.InstanceID()); err != nil {
				goodErr = err
				return false
			}
			during = append(during, time.Since(start))
			return true
		})
	})

	var addr string
	for _, a := range s.PeerInfo().Addresses {
		addr = a
	}
	hostPort := addr
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		hostPort = u.Host
	}
	attack := func(name string, c *tls.Config, wantIs error, wantText string) {
		t.Helper()
		m := build(t, velo.NewBuilder().AddTransport(mk(c, 0)).Options(velo.Options{DialTimeout: 2 * time.Second}))
		if err := m.RegisterPeer(s.PeerInfo()); err != nil {
			t.Fatal(err)
		}
		_, err := callWho(m, s.InstanceID())
		if err == nil || !errors.Is(err, wantIs) || !strings.Contains(err.Error(), wantText) {
			t.Errorf("%s: %v, want %v mentioning %q", name, err, wantIs, wantText)
		}
	}
	plain := build(t, velo.NewBuilder().AddTransport(mk(nil, 0)).Options(velo.Options{DialTimeout: 2 * time.Second}))
	info := s.PeerInfo()
	for name, a := range info.Addresses { // a plaintext dialer speaks http:// to the https:// address
		info.Addresses[name] = strings.Replace(a, "https://", "http://", 1)
	}
	if err := plain.RegisterPeer(info); err != nil {
		t.Fatal(err)
	}
	if _, err := callWho(plain, s.InstanceID()); !errors.Is(err, velo.ErrPeerLost) {
		t.Errorf("plaintext client: %v, want ErrPeerLost", err)
	}
	// The server refuses these client certificates with a TLS alert;
	// whether the caller reads the alert or a reset first is a race, so
	// only ErrPeerLost is certain.
	attack("certificate of another CA", testcerts.Mutual(ca, other.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/intruder"})), velo.ErrPeerLost, "")
	attack("expired certificate", testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/old",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})), velo.ErrPeerLost, "")
	attack("server of another CA", testcerts.Mutual(other, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/lost"})), velo.ErrPeerLost, "certificate")
	attack("identity not allowed", testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: evil})), velo.ErrPermissionDenied, "not this one")

	// A connection that never completes its TLS handshake is closed
	// within the handshake timeout.
	raw, err := net.Dial("tcp", hostPort)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = raw.Read(make([]byte, 1))
	stalled := time.Since(start)
	raw.Close()
	if err == nil || stalled > 2*time.Second {
		t.Errorf("a silent TLS client was left open for %v (read: %v), want a close within the 300ms handshake timeout", stalled, err)
	}

	// Rotation: new connections get the new certificate, the old
	// connection keeps working.
	second := ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/server"})
	current.Store(&second)
	probe := testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/probe"}))
	probe.ServerName = "127.0.0.1"
	tc, err := tls.Dial("tcp", hostPort, probe)
	if err != nil {
		t.Fatalf("dial after the rotation: %v", err)
	}
	served := tc.ConnectionState().PeerCertificates[0]
	if v := tc.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(v))
	}
	tc.Close()
	if !served.Equal(second.Leaf) {
		t.Errorf("after the rotation a new connection got serial %v, want the new certificate's %v", served.SerialNumber, second.Leaf.SerialNumber)
	}
	close(stop)
	wg.Wait()
	if goodErr != nil {
		t.Fatalf("the good peer failed during the attacks: %v", goodErr)
	}
	if _, err := callWho(good, s.InstanceID()); err != nil {
		t.Errorf("the good peer's connection after the rotation: %v", err)
	}
	slices.Sort(during)
	mid := during[len(during)/2]
	t.Logf("good peer p50 %v before the attacks, %v during (%d calls); %d TLS handshake failures logged",
		before.Round(time.Microsecond), mid.Round(time.Microsecond), len(during), logs.count("TLS handshake failed"))
	if mid > 2*before {
		t.Errorf("good peer p50 %v during the attacks, over twice its %v before", mid, before)
	}
	if logged && logs.count("TLS handshake failed") == 0 {
		t.Error("no TLS handshake failure was logged")
	}
}

// TestTLSImpersonationRefused: while an instance is connected under its
// certificate's identity, a connection that claims its instance id with
// another certificate is refused, and the genuine connection keeps
// working.
func TestTLSImpersonationRefused(t *testing.T) {
	ca := testcerts.NewCA(t, "velo test CA")
	var runs atomic.Int64
	s := tlsInstance(t, testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/server"})), velo.Options{}, whoCalls(&runs))
	a := tlsInstance(t, testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/a"})), velo.Options{})
	if err := a.RegisterPeer(s.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if got, err := callWho(a, s.InstanceID()); err != nil || got != "spiffe://velo.test/a" {
		t.Fatalf("genuine a: %q, %v", got, err)
	}
	impostor := build(t, velo.NewBuilder().InstanceID(a.InstanceID()).
		AddTransport(tcp.New(tcp.Options{TLS: testcerts.Mutual(ca, ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/mallory"}))})))
	if err := impostor.RegisterPeer(s.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	before := runs.Load()
	_, err := callWho(impostor, s.InstanceID())
	if !errors.Is(err, velo.ErrPermissionDenied) || !strings.Contains(err.Error(), "spiffe://velo.test/a") {
		t.Errorf("impostor: %v, want ErrPermissionDenied naming the identity a is connected under", err)
	}
	if runs.Load() != before {
		t.Error("the impostor's call ran")
	}
	for range 10 {
		if got, err := callWho(a, s.InstanceID()); err != nil || got != "spiffe://velo.test/a" {
			t.Fatalf("genuine a after the impostor: %q, %v", got, err)
		}
	}
}

// TestUnixSocketIdentity: over a Unix socket the handler sees the peer
// process's user, from the kernel.
func TestUnixSocketIdentity(t *testing.T) {
	var runs atomic.Int64
	dir := t.TempDir()
	s := build(t, velo.NewBuilder().AddTransport(uds.New(uds.Options{Path: dir + "/s.sock"})).Handle(whoCalls(&runs).Build()))
	c := build(t, velo.NewBuilder().AddTransport(uds.New(uds.Options{Path: dir + "/c.sock"})))
	if err := c.RegisterPeer(s.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	got, err := callWho(c, s.InstanceID())
	want := "unix:uid=" + strconv.Itoa(os.Getuid())
	if err != nil || got != want {
		t.Errorf("who over uds = %q, %v; want %q", got, err, want)
	}
}

// TestAuthorizeWithoutIdentityIsUnauthenticated: on a connection that
// authenticates nobody, a refusal is ErrUnauthenticated; refusals are
// counted, and logged at Warn at most a burst at once.
func TestAuthorizeWithoutIdentityIsUnauthenticated(t *testing.T) {
	var logs logBuffer
	var runs atomic.Int64
	s := build(t, velo.NewBuilder().
		Logger(slog.New(slog.NewTextHandler(&logs, nil))).
		Options(velo.Options{Authorize: func(_ context.Context, identity, _ string) error {
			if identity == "" {
				return errors.New("an identity is required")
			}
			return nil
		}}).
		Handle(whoCalls(&runs).Build()))
	c := newMessenger(t, velo.Options{})
	if err := c.RegisterPeer(s.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	const n = 100
	for range n {
		_, err := callWho(c, s.InstanceID())
		if !errors.Is(err, velo.ErrUnauthenticated) || !velo.NotDelivered(err) {
			t.Fatalf("call without an identity: %v, want ErrUnauthenticated", err)
		}
	}
	if runs.Load() != 0 || s.Denied() != n {
		t.Errorf("the handler ran %d times, Denied() = %d; want 0 and %d", runs.Load(), s.Denied(), n)
	}
	if lines := logs.count("request refused by Authorize"); lines == 0 || lines > 11 {
		t.Errorf("%d refusals logged %d lines, want 1..11 (a burst of 10, then one a second)", n, lines)
	}
}

// TestRegisterPeerMovesCallsToADialedConnection: a calls b over the
// connection b opened, until a registers b by hand; from then on a's calls
// go only over a connection a dialed to the address it was given, even
// right after many calls went the other way.
func TestRegisterPeerMovesCallsToADialedConnection(t *testing.T) {
	a := newMessenger(t, velo.Options{}, tcp.New(tcp.Options{}))
	b := newMessenger(t, velo.Options{}, tcp.New(tcp.Options{}))
	mustRegister(t, a, velo.UnaryHandler("echo", echoUnary))
	mustRegister(t, b, velo.UnaryHandler("echo", echoUnary))
	if err := b.RegisterPeer(a.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Unary("echo").Instance(a.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	call := func(n int) {
		t.Helper()
		for range n {
			if _, err := a.Unary("echo").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.AMSend("echo").Instance(b.InstanceID()).Send(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	framesOut := func() (accepted, dialed uint64) {
		for _, p := range a.Stats().Peers {
			if p.ID != b.InstanceID() {
				continue
			}
			if p.Dialed {
				dialed += p.FramesOut
			} else {
				accepted += p.FramesOut
			}
		}
		return accepted, dialed
	}
	call(20)
	before, dialed := framesOut()
	if before < 40 || dialed != 0 {
		t.Fatalf("before RegisterPeer: %d frames over b's connection, %d over one a dialed; want 40 or more, 0", before, dialed)
	}
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	call(20)
	after, dialed := framesOut()
	if after != before || dialed < 40 {
		t.Errorf("after RegisterPeer: %d frames over b's connection (%d before), %d over one a dialed; want no more, 40 or more", after, before, dialed)
	}
}
