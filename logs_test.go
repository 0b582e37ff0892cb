package velo_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/transport/mem"
)

// logRecords is a slog.Handler that keeps every record, for tests to read.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	return nil
}

// find returns the records at level whose message contains msg, each as
// its attributes by key.
func (l *logRecords) find(level slog.Level, msg string) []map[string]slog.Value {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]slog.Value
	for _, r := range l.recs {
		if r.Level != level || !strings.Contains(r.Message, msg) {
			continue
		}
		attrs := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
		out = append(out, attrs)
	}
	return out
}

// loggedPair is memPair with b logging into the returned records.
func loggedPair(t *testing.T) (a, b *velo.Messenger, logs *logRecords) {
	t.Helper()
	n := mem.NewNetwork()
	logs = &logRecords{}
	a = newMessenger(t, velo.Options{}, mem.New(n))
	bb, err := velo.NewBuilder().AddTransport(mem.New(n)).Logger(slog.New(logs)).Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bb.Shutdown(ctx)
	})
	if err := a.RegisterPeer(bb.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	return a, bb, logs
}

// An AMSend to a handler that does not exist has nobody to tell but the
// log: it is logged at Warn, and a flood of them logs a few lines, not
// one per message; the next line after the flood says how many were left
// out.
func TestLogOneWayToUnknownHandlerAtWarnRateLimited(t *testing.T) {
	ctx := testCtx(t)
	a, b, logs := loggedPair(t)
	mustRegister(t, b, velo.AMHandler("barrier", func(context.Context, *velo.Context) error { return nil }))
	const flood = 1000
	for range flood {
		if err := a.AMSend("nosuch").Instance(b.InstanceID()).Send(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Frames of one connection are handled in order: once the barrier is
	// answered, every AMSend before it was.
	if err := a.AMSync("barrier").Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	const msg = "am-send to a handler that does not exist"
	lines := logs.find(slog.LevelWarn, msg)
	if len(lines) == 0 {
		t.Fatalf("%d AMSends to an unknown handler logged nothing at Warn", flood)
	}
	if len(lines) > 15 {
		t.Errorf("%d AMSends to an unknown handler logged %d Warn lines; the rate limit allows about 10", flood, len(lines))
	}
	if h := lines[0]["handler"].String(); h != "nosuch" {
		t.Errorf("line names handler %q, want nosuch", h)
	}
	time.Sleep(1100 * time.Millisecond) // the limit allows a line a second
	if err := a.AMSend("nosuch").Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.AMSync("barrier").Instance(b.InstanceID()).Send(ctx); err != nil {
		t.Fatal(err)
	}
	lines = logs.find(slog.LevelWarn, msg)
	last := lines[len(lines)-1]
	if v, ok := last["suppressed"]; !ok || v.Kind() != slog.KindUint64 || v.Uint64() < flood-15 {
		t.Errorf("the line after the flood says %v lines were left out (attrs %v), want about %d", last["suppressed"].Any(), last, flood-10)
	}
}

// TestLogConnectionUpAndDown: a connection's start and end are logged at
// Info with the peer and the transport.
func TestLogConnectionUpAndDown(t *testing.T) {
	var logs logBuffer
	a := build(t, velo.NewBuilder().Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	b, err := velo.NewBuilder().Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, b, echoHandler())
	if err := a.RegisterPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Unary("echo").Instance(b.InstanceID()).Send(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.Shutdown(sctx)
	if _, err := discoverytestEventually(func() error {
		if logs.count("level=INFO msg=\"velo: connection down\"") == 0 {
			return errors.New("no connection down line")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if n := logs.count(`level=INFO msg="velo: connection up" instance=` + a.InstanceID().Short() + " peer=" + b.InstanceID().Short() + " transport=tcp"); n != 1 {
		t.Errorf("%d connection up lines for b, want 1:\n%s", n, logs.b.String())
	}
}
