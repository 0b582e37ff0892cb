// Package cli is the velo command: cmd/velo runs it with the discovery
// backends of the core module, discovery/etcd/cmd/velo adds etcd's. See
// cmd/velo for the commands and docs/cli.md for a session.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
)

// Exit statuses.
const (
	ExitOK      = 0
	ExitOther   = 1 // anything else
	ExitUsage   = 2 // a command line it cannot run
	ExitConnect = 3 // the target or the backend cannot be reached, or did not answer in time
	ExitHandler = 4 // the handler (or the instance) answered with an error
)

// usageErr is a command line the command cannot run; connErr a target or
// backend it cannot reach.
type (
	usageErr struct{ error }
	connErr  struct{ error }
)

func (e usageErr) Unwrap() error { return e.error }
func (e connErr) Unwrap() error  { return e.error }

// globals are the flags every subcommand takes.
type globals struct {
	discovery string
	service   string
	timeout   time.Duration
	json      bool
	verbose   bool
	headers   headerFlag
	backends  map[string]Backend
	// TLS for tcp:// and http:// targets: the CA file that verifies the
	// instance, the certificate and key presented to it (mutual TLS), the
	// name checked in its certificate.
	tlsCA, tlsCert, tlsKey, tlsName string
	stdout                          io.Writer
	stderr                          io.Writer
	stdin                           io.Reader
}

type headerFlag [][2]string

func (h *headerFlag) String() string { return fmt.Sprint(*h) }

func (h *headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	*h = append(*h, [2]string{k, v})
	return nil
}

// command is one subcommand: its usage line, what it does, its own flags
// and how it runs.
type command struct {
	name, args, short string
	flags             func(fs *flag.FlagSet)
	run               func(ctx context.Context, g *globals, args []string) error
}

var commands []*command

// Backend opens a discovery backend from its URL (etcd://host:port/...)
// and returns how to close it.
type Backend func(ctx context.Context, u *url.URL) (discovery.PeerDiscovery, func(), error)

// Main runs the command with os.Args and exits; backends adds discovery
// schemes to file: and nats://.
func Main(backends map[string]Backend) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, backends)
	stop()
	os.Exit(code)
}

// Run runs the command line args and returns the exit status.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, backends map[string]Backend) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	var cmd *command
	for _, c := range commands {
		if c.name == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "velo: unknown command %q\n", args[0])
		usage(stderr)
		return ExitUsage
	}
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr, backends: backends}
	fs := flag.NewFlagSet("velo "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&g.discovery, "discovery", os.Getenv("VELO_DISCOVERY"), "discovery backend: file:PATH or nats://host:port[/bucket] (default $VELO_DISCOVERY)")
	fs.StringVar(&g.service, "service", "", "call the service `NAME` (velo picks the instance) instead of a TARGET; needs --discovery")
	fs.DurationVar(&g.timeout, "timeout", 5*time.Second, "bound for connecting and for each call")
	fs.BoolVar(&g.json, "json", false, "print JSON, for scripts")
	fs.BoolVar(&g.verbose, "verbose", false, "log velo's connection events to stderr")
	fs.Var(&g.headers, "header", "add the header `key=value` to each call (repeatable)")
	fs.StringVar(&g.tlsCA, "ca", "", "TLS for tcp:// and http://: verify instances against the CA certificates in this PEM `file`")
	fs.StringVar(&g.tlsCert, "cert", "", "TLS: present the certificate (chain) in this PEM `file` (mutual TLS; with --key)")
	fs.StringVar(&g.tlsKey, "key", "", "TLS: the private key of --cert, PEM `file`")
	fs.StringVar(&g.tlsName, "server-name", "", "TLS: the `name` the instance's certificate must hold (default: the target's host)")
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: velo %s [flags] %s\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.short)
		fs.PrintDefaults()
	}
	rest, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		return ExitUsage // the flag package printed why
	}
	err = cmd.run(ctx, g, rest)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, oneLine(err))
	code := exitCode(err)
	if code == ExitUsage {
		fmt.Fprintf(stderr, "usage: velo %s [flags] %s (velo %s -h for the flags)\n", cmd.name, cmd.args, cmd.name)
	}
	return code
}

// parseInterleaved parses flags placed anywhere among the arguments, as
// people type them (velo call TARGET h --timeout 1s); "--" ends them.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		if args[0] == "--" {
			return append(rest, args[1:]...), nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

// oneLine is err as the one line the command prints: velo's errors start
// with "velo: " and their code's name already.
func oneLine(err error) string {
	var ve *velo.Error
	if errors.As(err, &ve) {
		s := "velo: " + ve.Code.Name() + ": "
		if ve.Handler != "" {
			s += fmt.Sprintf("handler %q: ", ve.Handler)
		}
		return s + strings.ReplaceAll(ve.Message, "\n", "; ")
	}
	s := strings.ReplaceAll(err.Error(), "\n", "; ")
	if !strings.HasPrefix(s, "velo: ") {
		s = "velo: " + s
	}
	return s
}

// exitCode classifies err.
func exitCode(err error) int {
	var ue usageErr
	var ce connErr
	var ve *velo.Error
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &ce):
		return ExitConnect
	case errors.As(err, &ve):
		switch ve.Code {
		case velo.CodePeerUnknown, velo.CodePeerLost, velo.CodeUnauthenticated, velo.CodeShuttingDown,
			velo.CodeDeadlineExceeded, velo.CodeCanceled:
			if !ve.Remote { // no answer came: the target is not there, or did not answer in time
				return ExitConnect
			}
		}
		return ExitHandler
	}
	return ExitOther
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "velo asks live velo instances what they offer and calls them.")
	fmt.Fprintln(w, "\nusage: velo COMMAND [flags] ARGS")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nTARGET: tcp://host:port, uds:///path, http://host:port, an instance id with --discovery,")
	fmt.Fprintln(w, "or --service NAME with --discovery in its place. velo COMMAND -h lists a command's flags.")
}
