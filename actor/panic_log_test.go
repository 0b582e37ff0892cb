package actor_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/velo-messenger/velo/actor"
)

// logRecorder is a slog.Handler that keeps every record, with the
// attributes added by With, for the test goroutine to look at.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]slog.Record
	attrs   []slog.Attr
}

func newLogRecorder() logRecorder {
	return logRecorder{mu: new(sync.Mutex), records: new([]slog.Record)}
}

func (h logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h logRecorder) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.mu.Lock()
	*h.records = append(*h.records, r)
	h.mu.Unlock()
	return nil
}

func (h logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return h
}

func (h logRecorder) WithGroup(string) slog.Handler { return h }

// panicLines returns the "handler panicked" records, each as its attributes.
func (h logRecorder) panicLines() []map[string]slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	var lines []map[string]slog.Value
	for _, r := range *h.records {
		if r.Message != "velo: handler panicked" {
			continue
		}
		attrs := map[string]slog.Value{"level": slog.StringValue(r.Level.String())}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value
			return true
		})
		lines = append(lines, attrs)
	}
	return lines
}

// TestPanicLogIsRateLimited: a flood of panics writes a short burst of
// Error lines, each with the stack, and a later line says how many were
// left out.
func TestPanicLogIsRateLimited(t *testing.T) {
	logs := newLogRecorder()
	a := mustNew(t, actor.Config[int, int]{
		Name: "flaky", Mode: actor.Inline,
		Restart: actor.DefaultRestartPolicy(),
		Factory: stateless(func(context.Context, int) { explode("boom") }),
		Logger:  slog.New(logs),
	})
	const flood = 1000
	start := time.Now()
	for i := range flood {
		if err := a.Tell(context.Background(), 0, i); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)

	lines := logs.panicLines()
	// A burst of 10, and one more for each second the flood took.
	limit := 10 + 1 + int(elapsed/time.Second)
	if len(lines) == 0 || len(lines) > limit {
		t.Fatalf("%d panics in %v wrote %d panic lines, want 1 to %d", flood, elapsed, len(lines), limit)
	}
	for i, l := range lines {
		if l["level"].String() != "ERROR" || l["handler"].String() != "flaky" || l["panic"].String() != "boom" {
			t.Fatalf("line %d: %v, want an Error line naming the handler and the panic", i, l)
		}
		if stack := l["stack"].String(); !strings.Contains(stack, "actor_test.explode") {
			t.Fatalf("line %d: stack %q does not show the panicking function", i, stack)
		}
	}

	// Panics go on, one a tick; once a period has passed one is written,
	// saying how many were left out since the last one.
	told := flood
	deadline := time.Now().Add(long)
	for {
		if err := a.Tell(context.Background(), 0, told); err != nil {
			t.Fatal(err)
		}
		told++
		lines = logs.panicLines()
		if _, ok := lines[len(lines)-1]["suppressed"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no panic line reported suppressed lines after %d panics", told)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var reported uint64
	for _, l := range lines {
		if s, ok := l["suppressed"]; ok {
			reported += s.Uint64()
		}
	}
	// Every panic was either written or reported as left out.
	if got := uint64(len(lines)) + reported; got != uint64(told) {
		t.Fatalf("%d lines written and %d reported left out, want %d panics in all", len(lines), reported, told)
	}
}
