package velo_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery/file"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/internal/wire"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Multi-process tests of service routing. The test process is the
// coordinator: it calls "job" on a service of worker processes (runWorker)
// with .Service, at a steady number of calls in flight, while workers are
// killed, frozen and shut down under it. The coordinator and the workers
// share a discovery registry file (discovery/file), as the processes of
// one host would, and nobody calls RegisterPeer: the coordinator knows the
// workers from discovery and from their hellos only.

// workerRole is the testchild role of a worker process (runWorker).
const workerRole = "worker"

// workerService is the service every worker belongs to; the coordinator
// belongs to none.
const workerService = "workers"

// jobWork is how long a worker works on one job.
const jobWork = 2 * time.Millisecond

// openRegistry opens the registry file that the coordinator and every
// worker share: an instance that dies without withdrawing drops out within
// its TTL of a second, and a change shows within 50 ms.
func openRegistry(path string) (*file.Registry, error) {
	return file.New(path, file.Options{TTL: time.Second, PollInterval: 50 * time.Millisecond})
}

// runWorker is an instance of workerService. It registers in the registry
// file named by -registry, with two handlers given to Builder.Handle:
//
//   - "job" takes a job id (8 bytes, big-endian), appends it as a line of
//     decimal to the file named by -record and to its list in memory,
//     works jobWork and answers its own instance id (16 bytes). The record
//     is written before the job runs, one write(2) per job, so that it
//     survives a kill -9: it lists every job that started on the worker.
//   - "ran" answers the list in memory: the ids of the jobs started, 8
//     bytes each.
//
// It serves until the test stops it, then shuts down gracefully.
func runWorker() int {
	fs := flag.NewFlagSet(workerRole, flag.ContinueOnError)
	regPath := fs.String("registry", "", "the discovery registry file")
	recPath := fs.String("record", "", "the file that lists the jobs started, one a line")
	if err := fs.Parse(testchild.Args()); err != nil {
		return 2
	}
	rec, err := os.OpenFile(*recPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	defer rec.Close()
	reg, err := openRegistry(*regPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	w := &jobWorker{rec: rec}
	ctx := context.Background()
	m, err := velo.NewBuilder().Service(workerService).Discovery(reg).Handle(w.handlers()...).Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	if err := testchild.PrintInfo(m.PeerInfo()); err != nil {
		return 2
	}
	testchild.WaitStop()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker: Shutdown:", err)
		return 1
	}
	return 0
}

// jobWorker is the state of runWorker's handlers.
type jobWorker struct {
	rec *os.File // O_APPEND: each line lands whole, whatever goroutine writes it
	mu  sync.Mutex
	ran []byte // guarded by mu: the ids of the jobs started, 8 bytes each
}

func (w *jobWorker) handlers() []*velo.Handler {
	job := velo.UnaryHandler("job", func(_ context.Context, c *velo.Context) ([]byte, error) {
		if len(c.Payload) != 8 {
			return nil, fmt.Errorf("job: payload of %d bytes, want an 8-byte id", len(c.Payload))
		}
		id := binary.BigEndian.Uint64(c.Payload)
		if _, err := w.rec.Write(append(strconv.AppendUint(nil, id, 10), '\n')); err != nil {
			return nil, err
		}
		w.mu.Lock()
		w.ran = append(w.ran, c.Payload...)
		w.mu.Unlock()
		time.Sleep(jobWork)
		self := c.Msg.InstanceID()
		return self[:], nil
	})
	ran := velo.UnaryHandler("ran", func(context.Context, *velo.Context) ([]byte, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return slices.Clone(w.ran), nil
	})
	return []*velo.Handler{job.Build(), ran.Build()}
}

// serviceRig is the coordinator (this process) and its workers.
type serviceRig struct {
	m       *velo.Messenger
	tap     *sendTap
	logs    *logRecords // the coordinator's log
	workers []*serviceWorker
}

// serviceWorker is one worker process.
type serviceWorker struct {
	*testchild.Child
	name   string // for the test's messages: its role in the test
	record string // its record file (see runWorker)
}

// startServiceRig starts n workers, then the coordinator, and waits until
// the coordinator lists every worker as an instance of workerService that
// offers "job". It stops them all when the test ends.
func startServiceRig(t *testing.T, n int) *serviceRig {
	t.Helper()
	dir := t.TempDir()
	regPath := filepath.Join(dir, "registry.json")
	r := &serviceRig{tap: newSendTap(tcp.New(tcp.Options{})), logs: &logRecords{}}
	for i := range n {
		rec := filepath.Join(dir, fmt.Sprintf("worker%d.jobs", i))
		c := testchild.Start(t, workerRole, testchild.Options{Args: []string{"-registry", regPath, "-record", rec}})
		r.workers = append(r.workers, &serviceWorker{Child: c, name: fmt.Sprintf("worker %d", i), record: rec})
	}
	reg, err := openRegistry(regPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := velo.NewBuilder().Discovery(reg).AddTransport(r.tap).Logger(slog.New(r.logs)).Build(context.Background())
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	r.m = m

	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
	defer cancel()
	var seen []peer.Info
	for seen = range m.WatchInstances(ctx, workerService) {
		if r.allListed(seen) {
			return r
		}
	}
	t.Fatalf("the coordinator lists %d instances of %q, want the %d workers: %v", len(seen), workerService, n, seen)
	return nil
}

// allListed reports whether list has every worker, offering "job".
func (r *serviceRig) allListed(list []peer.Info) bool {
	for _, w := range r.workers {
		i := slices.IndexFunc(list, func(info peer.Info) bool { return info.ID == w.Info.ID })
		if i < 0 || !slices.Contains(list[i].Handlers, "job") {
			return false
		}
	}
	return true
}

// worker returns the index of the worker whose instance id is id, or -1.
func (r *serviceRig) worker(id peer.ID) int {
	return slices.IndexFunc(r.workers, func(w *serviceWorker) bool { return w.Info.ID == id })
}

// runs stops every worker still running and returns, for each of them,
// the ids of the jobs it started, from its record file. Before it stops a
// worker, runs asks it "ran" (through the coordinator, by .Instance), and
// checks that every job the worker says it ran is in its record, so that
// the records of workers that were killed, which cannot be asked, are
// known to say what "ran" would have.
func (r *serviceRig) runs(t *testing.T) [][]uint64 {
	t.Helper()
	said := make([][]uint64, len(r.workers))
	for i, w := range r.workers {
		select {
		case <-w.Done():
			continue
		default:
		}
		ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
		// A worker that was frozen is back in discovery within a
		// refresh of its thawing; until then the call is not delivered,
		// and tried again.
		out, err := r.m.Unary("ran").Instance(w.Info.ID).Retry(velo.RetryPolicy{Attempts: 10, Backoff: 50 * time.Millisecond}).Send(ctx)
		cancel()
		if err != nil || len(out)%8 != 0 {
			t.Errorf("%s: ran: %d bytes, %v", w.name, len(out), err)
			continue
		}
		for b := range slices.Chunk(out, 8) {
			said[i] = append(said[i], binary.BigEndian.Uint64(b))
		}
	}
	recs := make([][]uint64, len(r.workers))
	for i, w := range r.workers {
		if err := w.Stop(); err != nil {
			t.Errorf("%s: %v", w.name, err)
		}
		ids, err := readRecord(w.record)
		if err != nil {
			t.Errorf("%s: %v", w.name, err)
		}
		recs[i] = ids
		if missing := missingFrom(said[i], ids); len(missing) > 0 {
			t.Errorf("%s: ran reports %d jobs its record lacks, such as %d", w.name, len(missing), missing[0])
		}
	}
	return recs
}

// readRecord reads a worker's record file.
func readRecord(path string) ([]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			return ids, fmt.Errorf("%s: line %d: %v", path, len(ids)+1, err)
		}
		ids = append(ids, id)
	}
	return ids, sc.Err()
}

// missingFrom returns the ids of a that b holds fewer times than a does.
func missingFrom(a, b []uint64) []uint64 {
	n := make(map[uint64]int, len(b))
	for _, id := range b {
		n[id]++
	}
	var out []uint64
	for _, id := range a {
		if n[id] == 0 {
			out = append(out, id)
			continue
		}
		n[id]--
	}
	return out
}

// ejections describes what the coordinator logged of routing leaving
// workers out and taking them back, with times relative to since.
func (r *serviceRig) ejections(since time.Time) string {
	r.logs.mu.Lock()
	defer r.logs.mu.Unlock()
	var b strings.Builder
	for _, rec := range r.logs.recs {
		if !strings.Contains(rec.Message, "routing") {
			continue
		}
		who, why := "", ""
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "peer":
				who = a.Value.String()
				for _, w := range r.workers {
					if w.Info.ID.Short() == who {
						who = w.name
					}
				}
			case "reason":
				why = " (" + a.Value.String() + ")"
			}
			return true
		})
		fmt.Fprintf(&b, "\n  %+7.0fms %s: %s%s", float64(rec.Time.Sub(since))/1e6, who, rec.Message, why)
	}
	return b.String()
}

// jobCall is one call of a jobLoad.
type jobCall struct {
	id         uint64
	start, end time.Time
	by         peer.ID // the instance that answered
	err        error
}

// jobLoad keeps calls of "job" going, a number of them at once, with
// sequential ids, until finish.
type jobLoad struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	next   atomic.Uint64
	mu     sync.Mutex
	calls  []jobCall // guarded by mu, until finish sorts them
	finish func() []jobCall
}

// jobCallTimeout bounds each call of a jobLoad, retries included.
const jobCallTimeout = 20 * time.Second

// startJobLoad starts inflight callers of "job" on workerService, with up
// to 5 attempts, each within 2 s; idempotent marks the calls Idempotent.
// The test's cleanup ends the load if the test did not.
func startJobLoad(t *testing.T, m *velo.Messenger, inflight int, idempotent bool) *jobLoad {
	l := &jobLoad{stop: make(chan struct{})}
	send := m.Unary("job").Service(workerService).Retry(velo.RetryPolicy{
		Attempts:       5,
		Backoff:        5 * time.Millisecond,
		AttemptTimeout: 2 * time.Second,
	})
	if idempotent {
		send = send.Idempotent()
	}
	for range inflight {
		l.wg.Go(func() {
			var mine []jobCall
			defer func() {
				l.mu.Lock()
				l.calls = append(l.calls, mine...)
				l.mu.Unlock()
			}()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				c := jobCall{id: l.next.Add(1) - 1}
				ctx, cancel := context.WithTimeout(context.Background(), jobCallTimeout)
				c.start = time.Now()
				out, err := send.RawPayload(binary.BigEndian.AppendUint64(nil, c.id)).Send(ctx)
				c.end = time.Now()
				cancel()
				if err == nil && len(out) != len(c.by) {
					err = fmt.Errorf("job answered %d bytes, want an instance id", len(out))
				}
				copy(c.by[:], out)
				c.err = err
				mine = append(mine, c)
			}
		})
	}
	// The calls end up indexed by id: every id taken is a call made.
	l.finish = sync.OnceValue(func() []jobCall {
		close(l.stop)
		l.wg.Wait()
		slices.SortFunc(l.calls, func(a, b jobCall) int { return cmp.Compare(a.id, b.id) })
		return l.calls
	})
	t.Cleanup(func() { l.finish() })
	return l
}

// phase is a span of a run, for the throughput it logs.
type phase struct {
	name     string
	from, to time.Time
}

// throughput describes the calls that succeeded in each phase, per second.
func throughput(calls []jobCall, phases []phase) string {
	var parts []string
	for _, p := range phases {
		n := 0
		for _, c := range calls {
			if c.err == nil && !c.end.Before(p.from) && c.end.Before(p.to) {
				n++
			}
		}
		parts = append(parts, fmt.Sprintf("%s %.0f jobs/s (%d in %v)", p.name, float64(n)/p.to.Sub(p.from).Seconds(), n, p.to.Sub(p.from).Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// stallWindow is the span stall counts calls over.
const stallWindow = 100 * time.Millisecond

// stall returns the longest stretch of the span [from, to) in whose every
// stallWindow fewer calls succeeded than a tenth of what the phase base
// averaged per window, and when it began: how long the service all but
// stopped.
func stall(calls []jobCall, base phase, from, to time.Time) (time.Duration, time.Time) {
	n := int((to.Sub(from) + stallWindow - 1) / stallWindow)
	done := make([]int, n)
	baseDone := 0
	for _, c := range calls {
		if c.err != nil {
			continue
		}
		if i := int(c.end.Sub(from) / stallWindow); !c.end.Before(from) && i < n {
			done[i]++
		}
		if !c.end.Before(base.from) && c.end.Before(base.to) {
			baseDone++
		}
	}
	low := float64(baseDone) / float64(base.to.Sub(base.from)/stallWindow) / 10
	longest, run, at := 0, 0, 0
	for i, d := range done {
		if float64(d) >= low {
			run = 0
			continue
		}
		if run++; run > longest {
			longest, at = run, i-run+1
		}
	}
	return time.Duration(longest) * stallWindow, from.Add(time.Duration(at) * stallWindow)
}

// sleepUntil sleeps until t.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// sendTap is the coordinator's transport: TCP, keeping a record of the
// "job" requests the coordinator writes (when each was handed to its
// connection, by the address dialed: a worker's listening address; and
// how many times each job was) and of the dials that failed. The
// coordinator dials every worker (no worker calls it), so every request
// to a worker goes on a connection it dialed; requests on connections a
// peer opened are counted apart, and should be none. An attempt that
// fails before its request is written (waiting for a dial that fails) is
// not seen as a request: only the dial is.
type sendTap struct {
	transport.Transport
	mu       sync.Mutex
	sent     map[string][]time.Time // guarded by mu
	attempts map[uint64]int         // guarded by mu: requests written, by job id
	inbound  int                    // guarded by mu: requests written on connections accepted
	refused  map[string]int         // guarded by mu: dials that failed, by address
}

func newSendTap(t transport.Transport) *sendTap {
	return &sendTap{Transport: t, sent: make(map[string][]time.Time), attempts: make(map[uint64]int), refused: make(map[string]int)}
}

func (t *sendTap) Listen(ctx context.Context, bind transport.Binder) (string, error) {
	return t.Transport.Listen(ctx, func(c transport.Conn) transport.Handler {
		return bind(&jobTapConn{Conn: c, tap: t})
	})
}

func (t *sendTap) Dial(ctx context.Context, addr string, bind transport.Binder) (transport.Conn, error) {
	c, err := t.Transport.Dial(ctx, addr, func(c transport.Conn) transport.Handler {
		return bind(&jobTapConn{Conn: c, tap: t, addr: addr})
	})
	if err != nil {
		t.mu.Lock()
		t.refused[addr]++
		t.mu.Unlock()
	}
	return c, err
}

// failedDials returns how many dials to addr failed.
func (t *sendTap) failedDials(addr string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refused[addr]
}

// sentTo returns when job requests were written to addr, in order.
func (t *sendTap) sentTo(addr string) []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.sent[addr])
}

// written returns how many requests were written for each job id, and
// how many went on connections accepted.
func (t *sendTap) written() (map[uint64]int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.attempts), t.inbound
}

// jobTapConn is a connection of a sendTap.
type jobTapConn struct {
	transport.Conn
	tap  *sendTap
	addr string // the address dialed; empty on a connection accepted
}

// WriteFrame records a job request once the connection took it, with the
// time the messenger handed it over: when it sent that attempt.
func (c *jobTapConn) WriteFrame(ctx context.Context, b []byte) error {
	at := time.Now()
	id, isJob := jobRequestID(b)
	err := c.Conn.WriteFrame(ctx, b)
	if err != nil || !isJob {
		return err
	}
	t := c.tap
	t.mu.Lock()
	if c.addr == "" {
		t.inbound++
	} else {
		t.sent[c.addr] = append(t.sent[c.addr], at)
	}
	t.attempts[id]++
	t.mu.Unlock()
	return nil
}

// WriteStalled and SetReadLimit pass the TCP connection's
// transport.Staller and transport.ReadLimiter through the tap, so that the
// coordinator's keepalive and read limits work as without it.
func (c *jobTapConn) WriteStalled(now time.Time) time.Duration {
	if st, ok := c.Conn.(transport.Staller); ok {
		return st.WriteStalled(now)
	}
	return 0
}

func (c *jobTapConn) SetReadLimit(n int) {
	if rl, ok := c.Conn.(transport.ReadLimiter); ok {
		rl.SetReadLimit(n)
	}
}

// jobRequestID returns the job id of frame (length prefix included) if it
// is a request to "job".
func jobRequestID(frame []byte) (uint64, bool) {
	if len(frame) <= wire.PrefixLen {
		return 0, false
	}
	typ, body, err := wire.ParseHeader(frame[wire.PrefixLen:])
	if err != nil || typ != wire.TypeRequest {
		return 0, false
	}
	r, err := wire.ParseRequest(body, wire.Limits{})
	if err != nil || r.Handler != "job" || len(r.Payload) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(r.Payload), true
}

// runsByJob counts, for each job id, how many times the workers started
// it, from runs' records.
func runsByJob(recs [][]uint64) map[uint64]int {
	n := make(map[uint64]int)
	for _, ids := range recs {
		for _, id := range ids {
			n[id]++
		}
	}
	return n
}

// checkAnswered fails the test for each call that succeeded without its
// job in the record of the worker that answered it.
func checkAnswered(t *testing.T, r *serviceRig, calls []jobCall, recs [][]uint64) {
	t.Helper()
	ran := make([]map[uint64]bool, len(recs))
	for i, ids := range recs {
		ran[i] = make(map[uint64]bool, len(ids))
		for _, id := range ids {
			ran[i][id] = true
		}
	}
	bad := 0
	for _, c := range calls {
		if c.err != nil {
			continue
		}
		if w := r.worker(c.by); w < 0 || !ran[w][c.id] {
			if bad++; bad <= 5 {
				t.Errorf("job %d: answered by %s, whose record lacks it", c.id, c.by.Short())
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d jobs in all answered by an instance whose record lacks them", bad)
	}
}

// TestServiceSurvivesWorkerFailures runs idempotent jobs on five workers,
// 32 at once, while one worker is killed, one frozen (SIGSTOP) and one
// shut down: every call succeeds, and the coordinator stops sending to
// the frozen worker within a second.
func TestServiceSurvivesWorkerFailures(t *testing.T) {
	const (
		workers  = 5
		inflight = 32
		before   = 1500 * time.Millisecond
		// during starts with the kill; the freeze follows at 250 ms
		// and the graceful stop at 500 ms, and the freeze has done all
		// it does within 1.5 s: routing leaves the frozen worker out,
		// and discovery drops it, whose TTL is a second.
		during = 2 * time.Second
		after  = 1500 * time.Millisecond
		// frozenBound is how long after its freeze the coordinator may
		// still send the frozen worker new calls.
		frozenBound = time.Second
	)
	r := startServiceRig(t, workers)
	killed, frozen, stopped := r.workers[0], r.workers[1], r.workers[2]
	killed.name, frozen.name, stopped.name = "the killed worker", "the frozen worker", "the stopped worker"

	load := startJobLoad(t, r.m, inflight, true)
	start := time.Now()
	sleepUntil(start.Add(before))
	faultsAt := time.Now()
	killed.Kill()
	time.Sleep(250 * time.Millisecond)
	if err := frozen.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP: %v", err)
	}
	frozeAt := time.Now()
	thaw := sync.OnceFunc(func() {
		if err := frozen.Signal(syscall.SIGCONT); err != nil {
			t.Errorf("SIGCONT: %v", err)
		}
	})
	t.Cleanup(thaw) // before testchild stops it
	time.Sleep(250 * time.Millisecond)
	stopAt := time.Now()
	if err := stopped.Stop(); err != nil {
		t.Errorf("%s: %v", stopped.name, err)
	}
	stoppedIn := time.Since(faultsAt)
	afterAt := faultsAt.Add(during)
	sleepUntil(afterAt.Add(after))
	calls := load.finish()
	end := time.Now()
	thaw()

	// 1. Every call succeeds.
	failed := 0
	for _, c := range calls {
		if c.err != nil {
			if failed++; failed <= 5 {
				t.Errorf("job %d (started %v after the first fault): %v", c.id, c.start.Sub(faultsAt).Round(time.Millisecond), c.err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d calls failed", failed, len(calls))
	}

	// 2. The coordinator sends the frozen worker no new call later than
	// frozenBound after its freeze. This is measured where the calls
	// leave: the tap records each job request the coordinator hands to
	// the connection it dialed to the frozen worker's address, retries
	// included. The worker cannot tell: a request written after its
	// freeze waits in its socket and reaches the handler after SIGCONT,
	// looking as late as one written then.
	sent := r.tap.sentTo(frozen.Info.Addresses["tcp"])
	late, afterFreeze := 0, 0
	var last time.Duration
	for _, at := range sent {
		if at.After(frozeAt) {
			afterFreeze++
			last = max(last, at.Sub(frozeAt))
		}
		if at.After(frozeAt.Add(frozenBound)) {
			late++
		}
	}
	if late > 0 {
		t.Errorf("the coordinator sent the frozen worker %d job requests more than %v after its freeze, the last %v after it", late, frozenBound, last.Round(time.Millisecond))
	}

	// 3. Report.
	recs := r.runs(t)
	checkAnswered(t, r, calls, recs)
	runs := runsByJob(recs)
	written, inbound := r.tap.written()
	retried, rerun := 0, 0
	for _, c := range calls {
		if written[c.id] > 1 {
			retried++
		}
		if runs[c.id] > 1 {
			rerun++
		}
	}
	if inbound > 0 {
		t.Errorf("%d job requests went on connections that workers opened: the tap cannot tell which worker got them", inbound)
	}
	per := make([]string, len(recs))
	for i, ids := range recs {
		per[i] = fmt.Sprintf("%s %d", r.workers[i].name, len(ids))
	}
	phases := []phase{{"before", start, faultsAt}, {"during", faultsAt, afterAt}, {"after", afterAt, end}}
	stalled, stalledAt := stall(calls, phases[0], faultsAt, end)
	t.Logf("%d calls, %d failed; throughput: %s", len(calls), failed, throughput(calls, phases))
	t.Logf("the longest stretch under a tenth of the throughput before: %v, from +%v after the kill", stalled, stalledAt.Sub(faultsAt).Round(time.Millisecond))
	t.Logf("faults: kill at +0, SIGSTOP at +%v, graceful stop at +%v (done at +%v)",
		frozeAt.Sub(faultsAt).Round(time.Millisecond), stopAt.Sub(faultsAt).Round(time.Millisecond), stoppedIn.Round(time.Millisecond))
	t.Logf("the frozen worker was sent %d job requests after its freeze, the last %v after it (bound %v)", afterFreeze, last.Round(time.Millisecond), frozenBound)
	t.Logf("calls retried (their request written more than once): %d; calls run more than once: %d (allowed: Idempotent); dials that failed to the killed worker: %d (each failed the attempts waiting on it, unseen as requests)",
		retried, rerun, r.tap.failedDials(killed.Info.Addresses["tcp"]))
	t.Logf("jobs started per worker: %s", strings.Join(per, ", "))
	t.Logf("routing, relative to the freeze:%s", r.ejections(frozeAt))
}

// TestServiceNoDoubleRunWithoutIdempotent runs jobs that are not marked
// Idempotent on four workers while one is killed and another shut down:
// no job runs twice, and every call that fails is one whose handler may
// have run (NotDelivered is false), since one that surely did not is
// retried.
func TestServiceNoDoubleRunWithoutIdempotent(t *testing.T) {
	const (
		workers  = 4
		inflight = 32
		before   = time.Second
		during   = time.Second
		after    = time.Second
	)
	r := startServiceRig(t, workers)
	killed, stopped := r.workers[0], r.workers[1]
	killed.name, stopped.name = "the killed worker", "the stopped worker"

	load := startJobLoad(t, r.m, inflight, false)
	start := time.Now()
	sleepUntil(start.Add(before))
	faultsAt := time.Now()
	killed.Kill()
	time.Sleep(250 * time.Millisecond)
	if err := stopped.Stop(); err != nil {
		t.Errorf("%s: %v", stopped.name, err)
	}
	afterAt := faultsAt.Add(during)
	sleepUntil(afterAt.Add(after))
	calls := load.finish()
	end := time.Now()

	recs := r.runs(t)
	checkAnswered(t, r, calls, recs)
	runs := runsByJob(recs)
	twice := 0
	for _, id := range slices.Sorted(maps.Keys(runs)) {
		if runs[id] > 1 {
			if twice++; twice <= 5 {
				var where []string
				for i, ids := range recs {
					if n := countOf(ids, id); n > 0 {
						where = append(where, fmt.Sprintf("%s ×%d", r.workers[i].name, n))
					}
				}
				t.Errorf("job %d ran %d times: %s", id, runs[id], strings.Join(where, ", "))
			}
		}
	}
	if twice > 5 {
		t.Errorf("%d jobs in all ran more than once", twice)
	}

	// Why each failed call failed: its code, and whether its handler ran
	// after all (the outcome NotDelivered false leaves open).
	why := make(map[string]int)
	failed := 0
	for _, c := range calls {
		if c.err == nil {
			continue
		}
		failed++
		if velo.NotDelivered(c.err) {
			t.Errorf("job %d failed with %v, which NotDelivered reports as not delivered: it should have been retried", c.id, c.err)
		}
		ran := "did not run"
		if runs[c.id] > 0 {
			ran = "ran"
		}
		var ve *velo.Error
		code := fmt.Sprintf("%T", c.err)
		if errors.As(c.err, &ve) {
			code = ve.Code.String()
		}
		why[code+", "+ran]++
	}
	var reasons []string
	for _, k := range slices.Sorted(maps.Keys(why)) {
		reasons = append(reasons, fmt.Sprintf("%d %s", why[k], k))
	}
	phases := []phase{{"before", start, faultsAt}, {"during", faultsAt, afterAt}, {"after", afterAt, end}}
	stalled, stalledAt := stall(calls, phases[0], faultsAt, end)
	t.Logf("%d calls, %d failed (%s); throughput: %s", len(calls), failed, strings.Join(reasons, "; "), throughput(calls, phases))
	t.Logf("the longest stretch under a tenth of the throughput before: %v, from +%v after the kill; dials that failed to the killed worker: %d",
		stalled, stalledAt.Sub(faultsAt).Round(time.Millisecond), r.tap.failedDials(killed.Info.Addresses["tcp"]))
	t.Logf("no job ran twice: %v; routing, relative to the kill:%s", twice == 0, r.ejections(faultsAt))
}

// countOf is how many times ids holds id.
func countOf(ids []uint64, id uint64) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}
