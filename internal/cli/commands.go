package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/velo-messenger/velo"
	"github.com/velo-messenger/velo/discovery"
	"github.com/velo-messenger/velo/peer"
	"github.com/velo-messenger/velo/system"
)

func init() {
	commands = []*command{
		{name: "instances", args: "", short: "list the instances a discovery backend knows (--watch to follow changes)", flags: instancesFlags, run: instances},
		{name: "handlers", args: "TARGET", short: "list an instance's handlers", run: handlers},
		{name: "describe", args: "TARGET [HANDLER]", short: "show what handlers take and give (typed handlers' fields)", run: describe},
		{name: "call", args: "TARGET HANDLER [JSON]", short: "call a handler (Unary) with JSON, print the answer as JSON", flags: callFlags, run: call("call")},
		{name: "send", args: "TARGET HANDLER [JSON]", short: "send a one-way message (AMSend)", flags: callFlags, run: call("send")},
		{name: "sync", args: "TARGET HANDLER [JSON]", short: "send a message and wait for the handler's outcome (AMSync)", flags: callFlags, run: call("sync")},
		{name: "ping", args: "TARGET", short: "time round trips to an instance", flags: pingFlags, run: ping},
		{name: "stats", args: "TARGET", short: "show an instance's stats (it must serve them: Options.ServeStats)", flags: statsFlags, run: stats},
		{name: "bench", args: "TARGET HANDLER", short: "measure a handler's latency and throughput", flags: benchFlags, run: bench},
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// wantArgs checks the number of positional arguments.
func wantArgs(args []string, min, max int, what string) error {
	if len(args) < min || len(args) > max {
		return usageErr{fmt.Errorf("want %s, got %d argument(s): %q", what, len(args), args)}
	}
	return nil
}

// --- instances

var watchFlag bool

func instancesFlags(fs *flag.FlagSet) {
	fs.BoolVar(&watchFlag, "watch", false, "keep running and print each change")
}

func instances(ctx context.Context, g *globals, args []string) error {
	if err := wantArgs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	if g.discovery == "" {
		return usageErr{errors.New("instances needs --discovery")}
	}
	d, closeDisc, err := openDiscovery(ctx, g, g.discovery)
	if err != nil {
		return err
	}
	defer closeDisc()
	if watchFlag {
		return watchInstances(ctx, g, d)
	}
	ls, ok := d.(discovery.Lister)
	if !ok {
		return usageErr{fmt.Errorf("%s cannot list its instances", g.discovery)}
	}
	lctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	list, err := ls.List(lctx)
	if err != nil {
		return connErr{fmt.Errorf("listing %s: %w", g.discovery, err)}
	}
	if g.service != "" {
		list = slices.DeleteFunc(list, func(i peer.Info) bool { return i.Service != g.service })
	}
	slices.SortFunc(list, func(a, b peer.Info) int {
		return strings.Compare(a.Service+a.ID.String(), b.Service+b.ID.String())
	})
	if g.json {
		if list == nil {
			list = []peer.Info{}
		}
		return printJSON(g.stdout, list)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSERVICE\tADDRESSES\tHANDLERS")
	for _, i := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.ID, dash(i.Service), addresses(i), dash(strings.Join(i.Handlers, ",")))
	}
	tw.Flush()
	fmt.Fprintf(g.stdout, "%d instance(s)\n", len(list))
	return nil
}

func watchInstances(ctx context.Context, g *globals, d discovery.PeerDiscovery) error {
	w, ok := d.(discovery.Watcher)
	if !ok {
		return usageErr{fmt.Errorf("%s cannot be watched", g.discovery)}
	}
	ch, err := w.Watch(ctx)
	if err != nil {
		return connErr{fmt.Errorf("watching %s: %w", g.discovery, err)}
	}
	for c := range ch {
		if g.service != "" && c.Info.Service != g.service && c.Kind != discovery.Delete {
			continue
		}
		if g.json {
			json.NewEncoder(g.stdout).Encode(map[string]any{"change": c.Kind.String(), "instance": c.Info})
			continue
		}
		fmt.Fprintf(g.stdout, "%s %s %s %s %s\n", time.Now().Format("15:04:05.000"), c.Kind, c.Info.ID, dash(c.Info.Service), addresses(c.Info))
	}
	return nil
}

func addresses(i peer.Info) string {
	var parts []string
	for _, t := range slices.Sorted(func(yield func(string) bool) {
		for k := range i.Addresses {
			if !yield(k) {
				return
			}
		}
	}) {
		parts = append(parts, t+"="+i.Addresses[t])
	}
	return dash(strings.Join(parts, " "))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// --- handlers, describe

// askOne connects to the target of a command that asks one instance about
// itself, and checks that at most max arguments follow it. The caller
// closes the target.
func askOne(ctx context.Context, g *globals, args []string, max int, what string) (*target, peer.ID, []string, error) {
	t, rest, err := connectTimed(ctx, g, args)
	if err != nil {
		return nil, peer.ID{}, nil, err
	}
	var id peer.ID
	if err = wantArgs(rest, 0, max, what); err == nil {
		id, err = t.instance()
	}
	if err != nil {
		t.close()
		return nil, peer.ID{}, nil, err
	}
	return t, id, rest, nil
}

func handlers(ctx context.Context, g *globals, args []string) error {
	t, id, _, err := askOne(ctx, g, args, 0, "TARGET only")
	if err != nil {
		return err
	}
	defer t.close()
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	names, err := t.m.ListHandlers(cctx, id)
	if err != nil {
		return err
	}
	if g.json {
		if names == nil {
			names = []string{}
		}
		return printJSON(g.stdout, names)
	}
	for _, n := range names {
		fmt.Fprintln(g.stdout, n)
	}
	return nil
}

func describe(ctx context.Context, g *globals, args []string) error {
	t, id, rest, err := askOne(ctx, g, args, 1, "TARGET [HANDLER]")
	if err != nil {
		return err
	}
	defer t.close()
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	descs, err := t.m.Describe(cctx, id)
	if err != nil {
		return err
	}
	if len(rest) == 1 {
		descs = slices.DeleteFunc(descs, func(d system.HandlerDesc) bool { return d.Name != rest[0] })
		if len(descs) == 0 {
			return &velo.Error{Code: velo.CodeHandlerNotFound, Handler: rest[0], Message: "the instance has no such handler", Remote: true}
		}
	}
	if g.json {
		if descs == nil {
			descs = []system.HandlerDesc{}
		}
		return printJSON(g.stdout, descs)
	}
	for i, d := range descs {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		writeDesc(g.stdout, d)
	}
	return nil
}

// writeDesc prints one handler: its kind, and a typed handler's types as
// indented fields.
func writeDesc(w io.Writer, d system.HandlerDesc) {
	switch d.Kind {
	case system.KindTyped:
		fmt.Fprintf(w, "%s (typed)\n", d.Name)
		fmt.Fprintf(w, "  input:  %s\n", typeLine(d.Input))
		writeFields(w, d.Input, "    ")
		fmt.Fprintf(w, "  output: %s\n", typeLine(d.Output))
		writeFields(w, d.Output, "    ")
	case system.KindAM:
		fmt.Fprintf(w, "%s (am: bytes in, outcome only)\n", d.Name)
	default:
		fmt.Fprintf(w, "%s (%s: bytes in, bytes out)\n", d.Name, dash(d.Kind))
	}
}

func typeLine(t *system.TypeDesc) string {
	if t == nil {
		return "-"
	}
	if t.Kind == "struct" || t.Type == t.Kind {
		return t.Type
	}
	return t.Type + " (" + t.Kind + ")"
}

func writeFields(w io.Writer, t *system.TypeDesc, indent string) {
	for t != nil && (t.Kind == "array" || t.Kind == "map") {
		t = t.Elem
	}
	if t == nil || t.Recursive {
		return
	}
	for _, f := range t.Fields {
		omit := ""
		if f.OmitEmpty {
			omit = " (omitempty)"
		}
		fmt.Fprintf(w, "%s%s %s%s\n", indent, f.Name, typeLine(f.Type), omit)
		writeFields(w, f.Type, indent+"  ")
	}
}

// --- call, send, sync

var rawFlag bool

func callFlags(fs *flag.FlagSet) {
	fs.BoolVar(&rawFlag, "raw", false, "send stdin's bytes as the payload and write the answer's bytes as they are")
}

func call(kind string) func(ctx context.Context, g *globals, args []string) error {
	return func(ctx context.Context, g *globals, args []string) error {
		t, rest, err := connectTimed(ctx, g, args)
		if err != nil {
			return err
		}
		defer t.close()
		if err := wantArgs(rest, 1, 2, "HANDLER [JSON] after TARGET"); err != nil {
			return err
		}
		payload, err := readPayload(g, rest[1:])
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		defer cancel()
		handler := rest[0]
		switch kind {
		case "send":
			return address(t.m.AMSend(handler).RawPayload(payload), t, g).Send(cctx)
		case "sync":
			if err := address(t.m.AMSync(handler).RawPayload(payload), t, g).Send(cctx); err != nil {
				return err
			}
			if g.json {
				fmt.Fprintln(g.stdout, `{"ok":true}`)
			}
			return nil
		}
		out, err := address(t.m.Unary(handler).RawPayload(payload), t, g).Send(cctx)
		if err != nil {
			return err
		}
		return writeAnswer(g, out)
	}
}

// addressable is a call builder: velo's AMSendBuilder, AMSyncBuilder and
// UnaryBuilder.
type addressable[B any] interface {
	Service(name string) B
	Instance(id peer.ID) B
	Header(k, v string) B
}

// address sends b to t (its instance, or its service) with the headers
// of --header.
func address[B addressable[B]](b B, t *target, g *globals) B {
	if t.service != "" {
		b = b.Service(t.service)
	} else {
		b = b.Instance(t.id)
	}
	for _, h := range g.headers {
		b = b.Header(h[0], h[1])
	}
	return b
}

// readPayload is the call's payload: the JSON argument as MessagePack,
// or stdin's bytes with --raw; none when neither is given.
func readPayload(g *globals, args []string) ([]byte, error) {
	if rawFlag {
		if len(args) > 0 {
			return nil, usageErr{errors.New("--raw reads the payload from stdin: give no JSON argument")}
		}
		b, err := io.ReadAll(io.LimitReader(g.stdin, 1<<30))
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return b, nil
	}
	if len(args) == 0 {
		return nil, nil
	}
	b, err := jsonToMsgpack([]byte(args[0]))
	if err != nil {
		return nil, usageErr{err}
	}
	return b, nil
}

// writeAnswer prints an answer: as JSON when it is MessagePack, as its
// bytes otherwise (and always with --raw).
func writeAnswer(g *globals, out []byte) error {
	if rawFlag {
		_, err := g.stdout.Write(out)
		return err
	}
	if j, ok := msgpackToJSON(out, !g.json); ok {
		fmt.Fprintf(g.stdout, "%s\n", j)
		return nil
	}
	if g.json {
		if utf8.Valid(out) {
			return json.NewEncoder(g.stdout).Encode(map[string]any{"text": string(out)})
		}
		return json.NewEncoder(g.stdout).Encode(map[string]any{"bytes": out})
	}
	g.stdout.Write(out)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		fmt.Fprintln(g.stdout)
	}
	return nil
}

// connectTimed is connect bounded by --timeout; an error reaching the
// target is a connection error.
func connectTimed(ctx context.Context, g *globals, args []string) (*target, []string, error) {
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	t, rest, err := connect(cctx, g, args)
	if err != nil {
		var ue usageErr
		if !errors.As(err, &ue) {
			err = connErr{err}
		}
		return nil, nil, err
	}
	return t, rest, nil
}

// --- ping

var pingCount int
var pingInterval time.Duration

func pingFlags(fs *flag.FlagSet) {
	fs.IntVar(&pingCount, "c", 0, "stop after `N` round trips (0: until interrupted)")
	fs.DurationVar(&pingInterval, "i", time.Second, "wait between round trips")
}

func ping(ctx context.Context, g *globals, args []string) error {
	t, id, _, err := askOne(ctx, g, args, 0, "TARGET only")
	if err != nil {
		return err
	}
	defer t.close()
	var times []time.Duration
	var failed int
	for n := 1; pingCount == 0 || n <= pingCount; n++ {
		if n > 1 {
			select {
			case <-ctx.Done():
				pingCount = n - 1
			case <-time.After(pingInterval):
			}
			if ctx.Err() != nil {
				break
			}
		}
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		d, err := t.m.Ping(cctx, id)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failed++
			fmt.Fprintf(g.stderr, "%s\n", oneLine(err))
			continue
		}
		times = append(times, d)
		if g.json {
			json.NewEncoder(g.stdout).Encode(map[string]any{"seq": n, "instance": id, "rtt_us": float64(d.Nanoseconds()) / 1e3})
		} else {
			fmt.Fprintf(g.stdout, "seq=%d instance=%s time=%s\n", n, id.Short(), fmtDur(d))
		}
	}
	if !g.json && len(times)+failed > 0 {
		s := summarize(times)
		fmt.Fprintf(g.stdout, "--- %s: %d sent, %d answered; min/median/max = %s/%s/%s\n", id.Short(), len(times)+failed, len(times), fmtDur(s.min), fmtDur(s.p50), fmtDur(s.max))
	}
	if failed > 0 && len(times) == 0 {
		return connErr{fmt.Errorf("no answer to %d ping(s)", failed)}
	}
	return nil
}

// --- stats

var statsWatch bool
var statsEvery time.Duration

func statsFlags(fs *flag.FlagSet) {
	fs.BoolVar(&statsWatch, "watch", false, "print them again every --every")
	fs.DurationVar(&statsEvery, "every", 2*time.Second, "with --watch, how often")
}

func stats(ctx context.Context, g *globals, args []string) error {
	t, id, _, err := askOne(ctx, g, args, 0, "TARGET only")
	if err != nil {
		return err
	}
	defer t.close()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(statsEvery):
			}
		}
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		st, err := t.m.RemoteStats(cctx, id)
		cancel()
		if errors.Is(err, velo.ErrHandlerNotFound) {
			return &velo.Error{Code: velo.CodeHandlerNotFound, Handler: "_stats", Remote: true,
				Message: "the instance does not serve its stats (it was built without velo.Options.ServeStats)"}
		}
		if err != nil {
			return err
		}
		if g.json {
			if err := printJSON(g.stdout, st); err != nil {
				return err
			}
		} else {
			writeStats(g.stdout, st)
		}
		if !statsWatch {
			return nil
		}
	}
}

func writeStats(w io.Writer, st velo.Stats) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HANDLER\tREQUESTS\tERRORS\tIN FLIGHT\tMAILBOX\tP50\tP99")
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range st.Handlers {
			if !yield(k) {
				return
			}
		}
	}) {
		h := st.Handlers[name]
		var errs uint64
		for _, n := range h.Errors {
			errs += n
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d/%d\t%s\t%s\n", name, h.Requests, errs, h.InFlight, h.MailboxDepth, h.MailboxCapacity, bucketQuantile(h.Duration, 0.5), bucketQuantile(h.Duration, 0.99))
	}
	tw.Flush()
	b, _ := json.Marshal(st.Totals)
	fmt.Fprintf(w, "totals: %s\n", b)
}

// bucketQuantile is the bound of the bucket that holds quantile q: "≤"
// that bound, or ">" the last one.
func bucketQuantile(h velo.Histogram, q float64) string {
	if h.Count == 0 {
		return "-"
	}
	want := uint64(q*float64(h.Count) + 0.5)
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= max(want, 1) {
			if i < len(h.Bounds) {
				return "≤" + fmtDur(h.Bounds[i])
			}
			break
		}
	}
	if len(h.Bounds) == 0 {
		return "-"
	}
	return ">" + fmtDur(h.Bounds[len(h.Bounds)-1])
}
