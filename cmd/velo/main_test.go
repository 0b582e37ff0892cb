package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery/file"
	"github.com/velo-messenger/velo/internal/cli"
	"github.com/velo-messenger/velo/internal/testcerts"
	"github.com/velo-messenger/velo/internal/testchild"
	"github.com/velo-messenger/velo/transport/tcp"
	"github.com/velo-messenger/velo/transport/uds"
)

// TestMain builds the command once, into a directory it removes after.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		dir, err := os.MkdirTemp("", "velo-cmd-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "velo")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(filepath.Dir(bin))
	os.Exit(code)
}

// Order is the input of the typed handler the tests call; Receipt its
// output.
type Order struct {
	Item     string `msgpack:"item"`
	Quantity int    `msgpack:"qty"`
	Notes    []string
	Rush     bool `msgpack:",omitempty"`
}

type Receipt struct {
	Item  string  `msgpack:"item"`
	Total float64 `msgpack:"total"`
	Lines []Line  `msgpack:"lines"`
}

type Line struct{ Text string }

// instance starts a messenger in the test process with a typed handler
// ("order"), a raw one ("echo", which answers its payload and its
// "x-tag" header) and a one-way one ("note"), over tcp and uds.
func instance(t *testing.T, b *velo.Builder) (*velo.Messenger, chan string) {
	t.Helper()
	notes := make(chan string, 16)
	if b == nil {
		b = velo.NewBuilder()
	}
	m, err := b.
		AddTransport(tcp.New(tcp.Options{})).
		AddTransport(uds.New(uds.Options{})).
		Handle(velo.TypedUnaryHandler("order", func(_ context.Context, c *velo.TypedContext[Order]) (Receipt, error) {
			if c.Input.Quantity < 0 {
				return Receipt{}, errors.New("negative quantity")
			}
			r := Receipt{Item: c.Input.Item, Total: 2.5 * float64(c.Input.Quantity)}
			for _, n := range c.Input.Notes {
				r.Lines = append(r.Lines, Line{Text: n})
			}
			return r, nil
		}).Build()).
		Handle(velo.UnaryHandler("echo", func(_ context.Context, c *velo.Context) ([]byte, error) {
			return append(append([]byte{}, c.Payload...), c.Headers["x-tag"]...), nil
		}).Build()).
		Handle(velo.AMHandler("note", func(_ context.Context, c *velo.Context) error {
			notes <- string(c.Payload)
			return nil
		}).Build()).
		Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m, notes
}

func tcpTarget(m *velo.Messenger) string {
	a, _ := m.PeerInfo().Address("tcp")
	return "tcp://" + a
}

var bin string

// velocmd runs the built command and returns its stdout, stderr and exit
// status.
func velocmd(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("velo %q: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the velo command")
	}
}

func TestCallTypedHandlerWithJSON(t *testing.T) {
	skipShort(t)
	m, _ := instance(t, nil)
	out, errOut, code := velocmd(t, "", "call", tcpTarget(m), "order", `{"item":"tea","qty":3,"Notes":["hot","now"]}`, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got Receipt
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("not JSON: %q: %v", out, err)
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &struct {
		Item  *string  `json:"item"`
		Total *float64 `json:"total"`
		Lines *[]Line  `json:"lines"`
	}{&got.Item, &got.Total, &got.Lines}); err != nil {
		t.Fatal(err)
	}
	if got.Item != "tea" || got.Total != 7.5 || len(got.Lines) != 2 || got.Lines[1].Text != "now" {
		t.Fatalf("answer %s, want item tea, total 7.5 and two lines", out)
	}

	// A handler's own error exits 4 and names the code.
	_, errOut, code = velocmd(t, "", "call", tcpTarget(m), "order", `{"item":"tea","qty":-1}`)
	if code != cli.ExitHandler || !strings.Contains(errOut, "handler_error") || !strings.Contains(errOut, "negative quantity") {
		t.Fatalf("exit %d, stderr %q: want %d and handler_error: negative quantity", code, errOut, cli.ExitHandler)
	}
	// JSON that does not fit the type is the handler's bad_payload.
	_, errOut, code = velocmd(t, "", "call", tcpTarget(m), "order", `{"item":5}`)
	if code != cli.ExitHandler || !strings.Contains(errOut, "bad_payload") {
		t.Fatalf("exit %d, stderr %q: want bad_payload", code, errOut)
	}
	// Text that is not JSON is a usage error, and nothing is sent.
	_, errOut, code = velocmd(t, "", "call", tcpTarget(m), "order", `{item:`)
	if code != cli.ExitUsage || !strings.Contains(errOut, "not JSON") {
		t.Fatalf("exit %d, stderr %q: want a usage error", code, errOut)
	}
}

func TestHandlersAndDescribe(t *testing.T) {
	skipShort(t)
	m, _ := instance(t, nil)
	out, errOut, code := velocmd(t, "", "handlers", tcpTarget(m))
	if code != 0 || out != "echo\nnote\norder\n" {
		t.Fatalf("handlers: exit %d, %q (stderr %q), want echo, note, order", code, out, errOut)
	}
	out, errOut, code = velocmd(t, "", "describe", tcpTarget(m), "order")
	if code != 0 {
		t.Fatalf("describe: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"order (typed)", "main.Order", "item string", "qty int", "Notes []string", "Rush bool (omitempty)", "main.Receipt", "total float64", "Text string"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = velocmd(t, "", "describe", "--json", tcpTarget(m))
	var descs []struct{ Name, Kind string }
	if err := json.Unmarshal([]byte(out), &descs); err != nil || len(descs) != 3 || descs[0].Kind != "unary" || descs[1].Kind != "am" || descs[2].Kind != "typed" {
		t.Fatalf("describe --json: %v: %s", err, out)
	}
	_, errOut, code = velocmd(t, "", "describe", tcpTarget(m), "nope")
	if code != cli.ExitHandler || !strings.Contains(errOut, "handler_not_found") {
		t.Fatalf("describe of an unknown handler: exit %d, %q", code, errOut)
	}
}

func TestUnknownHandler(t *testing.T) {
	skipShort(t)
	m, _ := instance(t, nil)
	_, errOut, code := velocmd(t, "", "call", tcpTarget(m), "nope", "{}")
	if code != cli.ExitHandler || !strings.HasPrefix(errOut, "velo: handler_not_found") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q: want %d and one line starting velo: handler_not_found", code, errOut, cli.ExitHandler)
	}
}

func TestPing(t *testing.T) {
	skipShort(t)
	m, _ := instance(t, nil)
	out, errOut, code := velocmd(t, "", "ping", "-c", "3", "-i", "10ms", tcpTarget(m))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if n := len(regexp.MustCompile(`(?m)^seq=\d instance=\w+ time=[0-9.]+(µs|ms)$`).FindAllString(out, -1)); n != 3 {
		t.Fatalf("%d time lines, want 3:\n%s", n, out)
	}
	if !strings.Contains(out, "3 sent, 3 answered") {
		t.Fatalf("no summary:\n%s", out)
	}
}

// TestUnreachable: a target that refuses, and one that accepts and never
// answers, exit 3 within --timeout.
func TestUnreachable(t *testing.T) {
	skipShort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, errOut, code := velocmd(t, "", "call", "tcp://"+addr, "x")
	if code != cli.ExitConnect || !strings.Contains(errOut, "peer_lost") {
		t.Fatalf("refused: exit %d, %q", code, errOut)
	}

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	start := time.Now()
	_, errOut, code = velocmd(t, "", "call", "--timeout", "300ms", "tcp://"+silent.Addr().String(), "x")
	took := time.Since(start)
	if code != cli.ExitConnect {
		t.Fatalf("silent: exit %d, %q", code, errOut)
	}
	if took > 5*time.Second {
		t.Fatalf("silent: exited after %v with --timeout 300ms", took)
	}
	t.Logf("silent target: exit %d after %v: %s", code, took, strings.TrimSpace(errOut))
}

func TestSendSyncRawHeaders(t *testing.T) {
	skipShort(t)
	m, notes := instance(t, nil)
	if _, errOut, code := velocmd(t, "", "send", tcpTarget(m), "note", `"hi"`); code != 0 {
		t.Fatalf("send: exit %d: %s", code, errOut)
	}
	if _, errOut, code := velocmd(t, "", "sync", tcpTarget(m), "note", `"there"`); code != 0 {
		t.Fatalf("sync: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"\xa2hi", "\xa5there"} { // MessagePack strings
		select {
		case got := <-notes:
			if got != want {
				t.Fatalf("note %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the note never arrived")
		}
	}
	sock, _ := m.PeerInfo().Address("uds")
	out, errOut, code := velocmd(t, "raw\x00bytes", "call", "--raw", "--header", "x-tag=!", "uds://"+sock, "echo")
	if code != 0 || out != "raw\x00bytes!" {
		t.Fatalf("call --raw over uds: exit %d, %q (%s)", code, out, errOut)
	}
}

func TestBench(t *testing.T) {
	skipShort(t)
	m, _ := instance(t, nil)
	out, errOut, code := velocmd(t, "", "bench", "-n", "300", "-c", "3", "-warmup", "10", tcpTarget(m), "echo")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !regexp.MustCompile(`echo: 300 calls \(32 B payload\) in \S+, \d+ calls/s, 0 errors\nlatency: min \S+  p50 \S+  p90 \S+  p99 \S+`).MatchString(out) {
		t.Fatalf("no summary:\n%s", out)
	}
	if !strings.Contains(errOut, "100%") {
		t.Fatalf("no progress bar on stderr: %q", errOut)
	}
}

func TestStats(t *testing.T) {
	skipShort(t)
	m, _ := instance(t, velo.NewBuilder().Options(velo.Options{ServeStats: true}))
	if _, errOut, code := velocmd(t, "", "call", tcpTarget(m), "echo"); code != 0 {
		t.Fatal(errOut)
	}
	out, errOut, code := velocmd(t, "", "stats", tcpTarget(m))
	if code != 0 || !regexp.MustCompile(`(?m)^echo +1 +0 `).MatchString(out) {
		t.Fatalf("stats: exit %d, %s (%s)", code, out, errOut)
	}
	plain, _ := instance(t, nil)
	if _, errOut, code := velocmd(t, "", "stats", tcpTarget(plain)); code != cli.ExitHandler || !strings.Contains(errOut, "handler_not_found") {
		t.Fatalf("stats of an instance that does not serve them: exit %d, %q", code, errOut)
	}
}

// TestDiscoveryTargets: instances lists what a file registry holds, an
// instance id resolves through it, and --service lets velo pick.
func TestDiscoveryTargets(t *testing.T) {
	skipShort(t)
	path := filepath.Join(t.TempDir(), "peers.json")
	var ids []string
	for range 2 {
		r, err := file.New(path, file.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := instance(t, velo.NewBuilder().Discovery(r).Service("shop"))
		ids = append(ids, m.InstanceID().String())
	}
	disc := "file:" + path
	out, errOut, code := velocmd(t, "", "instances", "--discovery", disc)
	if code != 0 || !strings.Contains(out, "2 instance(s)") || !strings.Contains(out, ids[0]) || !strings.Contains(out, ids[1]) || !strings.Contains(out, "echo,note,order") {
		t.Fatalf("instances: exit %d:\n%s%s", code, out, errOut)
	}
	out, errOut, code = velocmd(t, "", "call", "--discovery", disc, ids[1], "echo", "--raw")
	if code != 0 || out != "" {
		t.Fatalf("call by id: exit %d, %q, %s", code, out, errOut)
	}
	out, errOut, code = velocmd(t, "", "call", "--discovery", disc, "--service", "shop", "order", `{"item":"x","qty":2}`, "--json")
	if code != 0 || !strings.Contains(out, `"total":5`) {
		t.Fatalf("call --service: exit %d, %q, %s", code, out, errOut)
	}
	// The command's own instance is not published.
	out, _, _ = velocmd(t, "", "instances", "--discovery", disc, "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("instances --json after calls: %v, %s", err, out)
	}
}

// TestInstancesWatch: --watch prints an instance that registers after it
// started, and its withdrawal, and ends cleanly when interrupted.
func TestInstancesWatch(t *testing.T) {
	skipShort(t)
	path := filepath.Join(t.TempDir(), "peers.json")
	cmd := exec.Command(bin, "instances", "--watch", "--discovery", "file:"+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	await := func(re string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the watch ended before a line matching %s", re)
				}
				if regexp.MustCompile(re).MatchString(l) {
					return
				}
			case <-timeout:
				t.Fatalf("no line matching %s", re)
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // let the watch start; a Put of an earlier instance is reported too
	r, err := file.New(path, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := instance(t, velo.NewBuilder().Discovery(r).Service("shop"))
	id := m.InstanceID().String()
	await(`^\S+ put ` + id + ` shop tcp=127\.0\.0\.1:\d+ uds=`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	await(`^\S+ delete ` + id)
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the watch exited with %v when interrupted", err)
	}
}

// TestInstancesOfTheClusterExample runs examples/cluster and lists its
// three instances while it holds them.
func TestInstancesOfTheClusterExample(t *testing.T) {
	skipShort(t)
	cluster := testchild.BuildPackage(t, "../../examples/cluster")
	path := filepath.Join(t.TempDir(), "peers.json")
	cmd := exec.Command(cluster, "-discovery", "file://"+path, "-hold", "1m")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("the cluster did not stop when interrupted")
		}
	}()
	holding := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "holding the 3 instances") {
				holding <- true
			}
		}
		close(holding)
	}()
	select {
	case ok := <-holding:
		if !ok {
			t.Fatal("the cluster exited before holding its instances")
		}
	case <-time.After(time.Minute):
		t.Fatal("the cluster never held its instances")
	}
	out, errOut, code := velocmd(t, "", "instances", "--discovery", "file:"+path)
	if code != 0 || !strings.Contains(out, "3 instance(s)") || strings.Count(out, "greet,whoami") != 3 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	out, errOut, code = velocmd(t, "", "call", "--discovery", "file:"+path, "--service", "cluster", "greet", `{"Name":"Ada"}`, "--json")
	if code != 0 || !strings.Contains(out, `"Text":"hello Ada"`) {
		t.Fatalf("greet: exit %d, %s %s", code, out, errOut)
	}
}

// TestMutualTLS: an instance that requires mutual TLS answers the command
// given --ca, --cert and --key, and refuses it without them.
func TestMutualTLS(t *testing.T) {
	skipShort(t)
	ca := testcerts.NewCA(t, "velo-cli-test")
	server := ca.Issue(t, testcerts.Leaf{CN: "server"})
	client := ca.Issue(t, testcerts.Leaf{URI: "spiffe://velo.test/cli"})
	m, err := velo.NewBuilder().
		AddTransport(tcp.New(tcp.Options{TLS: testcerts.Mutual(ca, server)})).
		Handle(velo.UnaryHandler("who", func(_ context.Context, c *velo.Context) ([]byte, error) {
			return []byte(c.Identity), nil
		}).Build()).
		Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	pems, err := testcerts.EncodeMutual(ca, client)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// EncodeMutual writes the CA first, then the chain and the key.
	first := strings.Index(pems, "-----END CERTIFICATE-----\n") + len("-----END CERTIFICATE-----\n")
	caFile, pair := write("ca.pem", pems[:first]), write("cli.pem", pems[first:])
	target := tcpTarget(m)
	out, errOut, code := velocmd(t, "", "call", "--ca", caFile, "--cert", pair, "--key", pair, "--server-name", "localhost", target, "who")
	if code != 0 || out != "spiffe://velo.test/cli\n" {
		t.Fatalf("with certificates: exit %d, %q, %s", code, out, errOut)
	}
	if _, errOut, code := velocmd(t, "", "call", "--timeout", "2s", target, "who"); code != cli.ExitConnect {
		t.Fatalf("plain against TLS: exit %d, %s", code, errOut)
	}
	if _, errOut, code := velocmd(t, "", "call", "--ca", caFile, "--server-name", "localhost", target, "who"); code != cli.ExitConnect {
		t.Fatalf("no client certificate: exit %d, %s", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	skipShort(t)
	for _, args := range [][]string{{}, {"frobnicate"}, {"call"}, {"call", "ftp://x", "h"}, {"ping", "--bogus", "tcp://127.0.0.1:1"}, {"call", "0123456789abcdef0123456789abcdef", "h"}} {
		_, errOut, code := velocmd(t, "", args...)
		if code != cli.ExitUsage {
			t.Errorf("velo %q: exit %d, want %d: %s", args, code, cli.ExitUsage, errOut)
		}
	}
}
