// Package demo is the body of the cluster example: a program that starts
// several velo instances of one service as separate processes (copies of
// itself), which find each other through a discovery backend alone (no
// RegisterPeer), call the service's "whoami" handler (velo picks the
// instance) until every instance has answered, print who did, and shut
// down.
//
// The program's main chooses the backends it links: examples/cluster
// offers the file registry (the default) and NATS; the etcd module's
// discovery/etcd/examples/cluster offers the file registry and etcd, so
// that the core module does not depend on etcd.
package demo

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/discovery/file"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/transport/tcp"
)

// Backend opens the discovery backend that a -discovery URL names, with
// registrations that live ttl (zero: the backend's default). closeFn
// releases what it opened (a connection); it runs after the messenger
// has shut down.
type Backend func(ctx context.Context, u *url.URL, ttl time.Duration) (d discovery.PeerDiscovery, closeFn func(), err error)

// FileBackend opens the file registry at the URL's path (file:///path).
func FileBackend(_ context.Context, u *url.URL, ttl time.Duration) (discovery.PeerDiscovery, func(), error) {
	if u.Path == "" {
		return nil, nil, fmt.Errorf("file URL %q has no path", u)
	}
	r, err := file.New(u.Path, file.Options{TTL: ttl})
	return r, func() {}, err
}

const (
	childEnv   = "VELO_CLUSTER_CHILD" // set in a child's environment: its index
	idsEnv     = "VELO_CLUSTER_IDS"   // every instance's id, comma-separated
	whoami     = "whoami"
	service    = "cluster"
	doneLine   = "done" // a child's last line: it reached every other instance
	callTry    = 2 * time.Second
	stopWithin = 5 * time.Second
)

type config struct {
	discovery string
	n         int
	ttl       time.Duration
	timeout   time.Duration
	hold      time.Duration
}

// Main runs the program and exits: as the parent when it was started by
// hand, as instance i when a parent started it.
func Main(name string, backends map[string]Backend) {
	backends = maps.Clone(backends)
	backends["file"] = FileBackend
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	var c config
	fs.StringVar(&c.discovery, "discovery", "", "backend URL: file:///path/peers.json (default: a file in a new temporary directory)"+schemes(backends))
	fs.IntVar(&c.n, "n", 3, "number of instances")
	fs.DurationVar(&c.ttl, "ttl", 0, "registration TTL (0: the backend's default)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "bound for the run until every instance reached the others")
	fs.DurationVar(&c.hold, "hold", 0, "keep the instances up this long once they reached each other (until interrupted), for a look with the velo command")
	fs.Parse(os.Args[1:])
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.n < 2:
		err = fmt.Errorf("-n is %d, want at least 2", c.n)
	case os.Getenv(childEnv) != "":
		err = child(c, backends)
	default:
		err = parent(c, backends)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func schemes(backends map[string]Backend) string {
	var b strings.Builder
	for _, s := range slices.Sorted(maps.Keys(backends)) {
		if s != "file" {
			fmt.Fprintf(&b, ", %s://host:port", s)
		}
	}
	return b.String()
}

// open parses raw and opens the backend it names.
func open(ctx context.Context, raw string, ttl time.Duration, backends map[string]Backend) (discovery.PeerDiscovery, func(), error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("-discovery: %w", err)
	}
	b := backends[u.Scheme]
	if b == nil {
		return nil, nil, fmt.Errorf("-discovery %q: unknown scheme %q (supported: %s)", raw, u.Scheme, strings.Join(slices.Sorted(maps.Keys(backends)), ", "))
	}
	d, closeFn, err := b(ctx, u, ttl)
	if err != nil {
		return nil, nil, fmt.Errorf("-discovery %s: %w", raw, err)
	}
	return d, closeFn, nil
}

// parent starts the instances, relays what they print, tells them to stop
// once each has reached all the others, and checks that every one
// withdrew from discovery.
func parent(c config, backends map[string]Backend) (err error) {
	sig, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancelRun := context.WithTimeout(sig, c.timeout)
	defer cancelRun()
	if c.discovery == "" {
		dir, err := os.MkdirTemp("", "velo-cluster-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.discovery = (&url.URL{Scheme: "file", Path: filepath.Join(dir, "peers.json")}).String()
	}
	d, closeBackend, err := open(ctx, c.discovery, c.ttl, backends)
	if err != nil {
		return err
	}
	defer closeBackend()

	ids := make([]string, c.n)
	for i := range ids {
		ids[i] = peer.NewID().String()
	}
	fmt.Printf("starting %d instances with discovery %s\n", c.n, c.discovery)
	kids := make([]*kid, c.n)
	defer func() {
		for _, k := range kids {
			if k != nil {
				k.kill()
			}
		}
	}()
	lines := make(chan kidLine)
	var readers sync.WaitGroup
	for i := range kids {
		k, err := startKid(i, c, ids)
		if err != nil {
			return err
		}
		kids[i] = k
		readers.Go(func() { k.relay(ctx, lines) })
	}
	go func() { readers.Wait(); close(lines) }()

	done := 0
	for done < c.n {
		select {
		case l, ok := <-lines:
			if !ok {
				return fmt.Errorf("instances exited before reaching each other (%d of %d done)", done, c.n)
			}
			if l.text == doneLine {
				done++
				continue
			}
			fmt.Printf("[%d] %s\n", l.i, l.text)
		case <-ctx.Done():
			return fmt.Errorf("%d of %d instances reached all the others before: %w", done, c.n, ctx.Err())
		}
	}
	if c.hold > 0 {
		fmt.Printf("holding the %d instances for %v (interrupt to stop): velo instances --discovery %s\n", c.n, c.hold, c.discovery)
		t := time.NewTimer(c.hold)
		select {
		case <-t.C:
		case <-sig.Done():
		}
		t.Stop()
	}
	// Every instance reached every other: let them go. Each shuts down,
	// which withdraws it from discovery at once.
	for _, k := range kids {
		k.stdin.Close()
	}
	var errs []error
	for i, k := range kids {
		if err := k.wait(stopWithin); err != nil {
			errs = append(errs, fmt.Errorf("instance %d: %w", i, err))
		}
		kids[i] = nil
	}
	for l := range lines {
		fmt.Printf("[%d] %s\n", l.i, l.text)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Not ctx: an interrupt during -hold ends it, and the check must run.
	lctx, lcancel := context.WithTimeout(context.Background(), stopWithin)
	defer lcancel()
	for i, s := range ids {
		id, _ := peer.Parse(s)
		if _, err := d.Lookup(lctx, id); !errors.Is(err, discovery.ErrNotFound) {
			return fmt.Errorf("instance %d still in discovery after it shut down: %v", i, err)
		}
	}
	fmt.Printf("all %d instances reached each other through discovery, shut down and withdrew\n", c.n)
	return nil
}

// kid is a child process.
type kid struct {
	i     int
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   io.Reader
}

type kidLine struct {
	i    int
	text string
}

func startKid(i int, c config, ids []string) (*kid, error) {
	cmd := exec.Command(os.Args[0], "-discovery", c.discovery, "-n", strconv.Itoa(c.n), "-ttl", c.ttl.String(), "-timeout", c.timeout.String())
	cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(i+1), idsEnv+"="+strings.Join(ids, ","))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting instance %d: %w", i, err)
	}
	return &kid{i: i, cmd: cmd, stdin: stdin, out: out}, nil
}

// relay passes the child's lines on until its stdout closes (it exited)
// or the parent gives up.
func (k *kid) relay(ctx context.Context, lines chan<- kidLine) {
	sc := bufio.NewScanner(k.out)
	for sc.Scan() {
		select {
		case lines <- kidLine{k.i, sc.Text()}:
		case <-ctx.Done():
			return
		}
	}
}

// wait waits for the child to exit, killing it after d.
func (k *kid) wait(d time.Duration) error {
	t := time.AfterFunc(d, func() { k.cmd.Process.Kill() })
	defer t.Stop()
	return k.cmd.Wait()
}

func (k *kid) kill() {
	k.stdin.Close()
	k.cmd.Process.Kill()
	k.cmd.Wait()
}

// child is instance i: an instance of the service that serves whoami.
// It waits until discovery lists every instance, then calls the service
// (velo picks the instance) until each instance has answered, prints who
// did and doneLine, and shuts down when its stdin closes.
func child(c config, backends map[string]Backend) error {
	i, err := strconv.Atoi(os.Getenv(childEnv))
	if err != nil {
		return fmt.Errorf("%s: %w", childEnv, err)
	}
	i-- // the variable holds index+1, so that it is never empty
	var ids []peer.ID
	for s := range strings.SplitSeq(os.Getenv(idsEnv), ",") {
		id, err := peer.Parse(s)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if i < 0 || i >= len(ids) {
		return fmt.Errorf("instance %d of %d", i, len(ids))
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	d, closeBackend, err := open(ctx, c.discovery, c.ttl, backends)
	if err != nil {
		return err
	}
	defer closeBackend()

	// me is fixed before Build: the instance is published (and called)
	// before Build returns, so the handler must not read anything that
	// is set after it.
	me := fmt.Sprintf("instance %d (%s, pid %d)", i, ids[i].Short(), os.Getpid())
	// Handle registers whoami before the instance is published: no
	// caller can find it without the handler.
	m, err := velo.NewBuilder().
		AddTransport(tcp.New(tcp.Options{Listen: "127.0.0.1:0"})).
		InstanceID(ids[i]).
		Options(velo.Options{ServeStats: true}). // for velo stats
		Discovery(d).
		Service(service).
		Handle(velo.UnaryHandler(whoami, func(context.Context, *velo.Context) ([]byte, error) {
			return []byte(me), nil
		}).Build()).
		Handle(velo.TypedUnaryHandler("greet", func(_ context.Context, c *velo.TypedContext[Greeting]) (Reply, error) {
			return greet(c.Input, me), nil
		}).Build()).
		Build(ctx)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), stopWithin)
		defer cancel()
		err = errors.Join(err, m.Shutdown(sctx))
	}()
	addr, _ := m.PeerInfo().Address("tcp")
	fmt.Printf("%s at %s serving %s in service %q\n", me, addr, whoami, service)

	for list := range m.WatchInstances(ctx, service) {
		if len(list) == len(ids) {
			break
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("instance %d: not every instance showed up: %w", i, ctx.Err())
	}
	answered := make(map[string]bool)
	for calls := 1; len(answered) < len(ids); calls++ {
		if calls > 100*len(ids) {
			return fmt.Errorf("instance %d: %d calls reached only %d of %d instances", i, calls, len(answered), len(ids))
		}
		cctx, cancel := context.WithTimeout(ctx, callTry)
		b, err := m.Unary(whoami).Service(service).
			Retry(velo.RetryPolicy{Attempts: 3, Backoff: 20 * time.Millisecond}).
			Send(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("instance %d calling the service: %w", i, err)
		}
		if !answered[string(b)] {
			answered[string(b)] = true
			fmt.Printf("call %d answered by %s\n", calls, b)
		}
	}
	fmt.Println(doneLine)
	// Serve until the parent says every instance is done.
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// Greeting is the input of the typed handler "greet", there for a look
// with the velo command (velo describe, velo call).
type Greeting struct {
	Name  string
	Times int `msgpack:",omitempty"`
}

// Reply is what "greet" answers.
type Reply struct {
	Text string
	By   string
}

func greet(g Greeting, me string) Reply {
	text := "hello " + g.Name
	for range min(g.Times, 10) - 1 {
		text += ", hello " + g.Name
	}
	return Reply{Text: text, By: me}
}
