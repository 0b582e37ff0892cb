package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	benchConc     int
	benchCount    int
	benchDuration time.Duration
	benchWarmup   int
	benchSize     int
	benchQuiet    bool
)

func benchFlags(fs *flag.FlagSet) {
	fs.IntVar(&benchConc, "c", 1, "calls in flight")
	fs.IntVar(&benchCount, "n", 0, "stop after `N` calls (default 10000 unless -d is given)")
	fs.DurationVar(&benchDuration, "d", 0, "stop after this long")
	fs.IntVar(&benchWarmup, "warmup", 500, "calls before measuring, not measured")
	fs.IntVar(&benchSize, "payload", 32, "payload `bytes` when no JSON payload is given (raw bytes, as ping_pong sends)")
	fs.BoolVar(&benchQuiet, "quiet", false, "no progress bar")
}

// summary is what bench reports.
type summary struct {
	Calls    int           `json:"calls"`
	Errors   int           `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	PerSec   float64       `json:"calls_per_sec"`
	min, max time.Duration
	p50, p90 time.Duration
	p99      time.Duration
	Mean     time.Duration `json:"mean_ns"`
}

func summarize(ts []time.Duration) summary {
	var s summary
	if len(ts) == 0 {
		return s
	}
	ts = slices.Clone(ts)
	slices.Sort(ts)
	q := func(f float64) time.Duration { return ts[min(len(ts)-1, int(f*float64(len(ts))))] }
	var sum time.Duration
	for _, t := range ts {
		sum += t
	}
	s.Calls = len(ts)
	s.min, s.max, s.p50, s.p90, s.p99 = ts[0], ts[len(ts)-1], q(0.5), q(0.9), q(0.99)
	s.Mean = sum / time.Duration(len(ts))
	return s
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return d.Round(time.Millisecond).String()
}

func bench(ctx context.Context, g *globals, args []string) error {
	t, rest, err := connectTimed(ctx, g, args)
	if err != nil {
		return err
	}
	defer t.close()
	if err := wantArgs(rest, 1, 2, "HANDLER [JSON] after TARGET"); err != nil {
		return err
	}
	if benchConc < 1 {
		return usageErr{fmt.Errorf("-c is %d, want at least 1", benchConc)}
	}
	total := benchCount
	if total == 0 && benchDuration == 0 {
		total = 10000
	}
	payload := bytes.Repeat([]byte{'x'}, benchSize)
	if len(rest) == 2 {
		if payload, err = jsonToMsgpack([]byte(rest[1])); err != nil {
			return usageErr{err}
		}
	}
	b := address(t.m.Unary(rest[0]).RawPayload(payload), t, g)
	one := func() (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		defer cancel()
		start := time.Now()
		_, err := b.Send(cctx)
		return time.Since(start), err
	}
	for i := range benchWarmup {
		if _, err := one(); err != nil {
			return fmt.Errorf("warm-up call %d: %w", i+1, err)
		}
	}

	var issued, done atomic.Int64
	var firstErr atomic.Value
	var errCount atomic.Int64
	lat := make([][]time.Duration, benchConc)
	start := time.Now()
	var deadline time.Time
	if benchDuration > 0 {
		deadline = start.Add(benchDuration)
	}
	var wg sync.WaitGroup
	for w := range benchConc {
		wg.Go(func() {
			for ctx.Err() == nil {
				if total > 0 && issued.Add(1) > int64(total) {
					return
				}
				if !deadline.IsZero() && time.Now().After(deadline) {
					return
				}
				d, err := one()
				done.Add(1)
				if err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				lat[w] = append(lat[w], d)
			}
		})
	}
	stopBar := make(chan struct{})
	barDone := make(chan struct{})
	go func() {
		defer close(barDone)
		if benchQuiet || g.json {
			<-stopBar
			return
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopBar:
				progress(g.stderr, done.Load(), total, time.Since(start), benchDuration, true)
				return
			case <-tick.C:
				progress(g.stderr, done.Load(), total, time.Since(start), benchDuration, false)
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	close(stopBar)
	<-barDone

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	s := summarize(all)
	s.Errors = int(errCount.Load())
	s.Elapsed = elapsed
	s.PerSec = float64(s.Calls) / elapsed.Seconds()
	if g.json {
		err = json.NewEncoder(g.stdout).Encode(map[string]any{
			"handler": rest[0], "concurrency": benchConc, "payload_bytes": len(payload),
			"calls": s.Calls, "errors": s.Errors, "elapsed_s": elapsed.Seconds(), "calls_per_sec": s.PerSec,
			"p50_us": us(s.p50), "p90_us": us(s.p90), "p99_us": us(s.p99), "min_us": us(s.min), "max_us": us(s.max), "mean_us": us(s.Mean),
		})
	} else {
		writeSummary(g.stdout, rest[0], len(payload), s)
	}
	if err != nil {
		return err
	}
	if e, _ := firstErr.Load().(error); e != nil {
		if s.Calls == 0 {
			return e
		}
		fmt.Fprintf(g.stderr, "%d call(s) failed; the first: %s\n", s.Errors, oneLine(e))
	}
	if s.Calls == 0 && ctx.Err() != nil {
		return errors.New("interrupted before any call")
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func writeSummary(w io.Writer, handler string, size int, s summary) {
	fmt.Fprintf(w, "%s: %d calls (%d B payload) in %s, %.0f calls/s, %d errors\n", handler, s.Calls, size, s.Elapsed.Round(time.Millisecond), s.PerSec, s.Errors)
	fmt.Fprintf(w, "latency: min %s  p50 %s  p90 %s  p99 %s  max %s  mean %s\n", fmtDur(s.min), fmtDur(s.p50), fmtDur(s.p90), fmtDur(s.p99), fmtDur(s.max), fmtDur(s.Mean))
}

// progress draws a one-line bar on w (a terminal's stderr): the share of
// the calls or of the time done.
func progress(w io.Writer, done int64, total int, elapsed, limit time.Duration, last bool) {
	frac := 0.0
	switch {
	case total > 0:
		frac = float64(done) / float64(total)
	case limit > 0:
		frac = float64(elapsed) / float64(limit)
	}
	frac = min(max(frac, 0), 1)
	const width = 30
	n := int(frac * width)
	end := "\r"
	if last {
		end = "\n"
	}
	fmt.Fprintf(w, "[%s%s] %3.0f%% %d calls %s%s", strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100, done, elapsed.Round(100*time.Millisecond), end)
}
