package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// serveEnv makes the test binary a server process (runChild) instead of
// running tests, for the benchmarks whose server lives in another process.
const serveEnv = "VELO_BENCH_SERVE"

func TestMain(m *testing.M) {
	if name := os.Getenv(serveEnv); name != "" {
		if err := run([]string{"-" + serveFlag, name}, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestBenchSmoke builds the bench command and runs it with -quick, so that
// `make test` notices when the bench stops working: every system must show
// in the tables and in the CSV, in every cell of its modes.
func TestBenchSmoke(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the bench with")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bench")
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	outDir := filepath.Join(dir, "results")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-quick", "-out", outDir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	table := stdout.String()
	if !strings.Contains(table, "machine: ") {
		t.Errorf("no machine line in:\n%s", table)
	}
	systems, err := selectSystems("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range systems {
		if !strings.Contains(table, "| "+s.Family+" | "+transportCell(s)+" |") {
			t.Errorf("no row for %s in:\n%s", s.Name, table)
		}
	}

	rows := readCSV(t, filepath.Join(outDir, csvFile))
	got := make(map[string]bool)
	for _, r := range rows[1:] {
		got[r[0]+" "+r[1]+" "+r[2]+" "+r[3]] = true // mode, in flight, payload, system
	}
	want := 0
	for _, s := range systems {
		for _, m := range s.Modes {
			levels := []string{"1"}
			if m == modeConcurrent {
				levels = strings.Split(quickArgs["concurrency"], ",")
			}
			for _, n := range levels {
				want++
				if key := m + " " + n + " 32 " + s.Name; !got[key] {
					t.Errorf("no CSV row %q", key)
				}
			}
		}
	}
	if len(rows) != 1+want {
		t.Errorf("%s has %d rows, want a header and %d", csvFile, len(rows), want)
	}

	// A subset with the chart; pinned apart where there are 2 CPUs, since
	// pinning re-places the bench between starting the servers and
	// connecting to them.
	args := []string{"-quick", "-chart", "-systems", floorName + "," + grpcName + ",velo-unary,velo-amsend", "-transports", "tcp", "-out", outDir}
	if runtime.GOOS == "linux" && runtime.NumCPU() >= 2 {
		args = append(args, "-pin", pinSplit)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "| velo-unary | tcp |") {
		t.Errorf("run %q: %v\n%s", args, err, out)
	}
	if fi, err := os.Stat(filepath.Join(outDir, chartFile)); err != nil || fi.Size() == 0 {
		t.Errorf("no chart: %v", err)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], csvHeader) {
		t.Fatalf("%s: header %q, want %q", path, rows[:min(1, len(rows))], csvHeader)
	}
	return rows
}

func TestFlagsRejectNonsense(t *testing.T) {
	for _, args := range [][]string{
		{"-rounds", "0"},
		{"-reps", "0"},
		{"-warmup", "-1"},
		{"-payload", "-1"},
		{"-payloads", "32,lots"},
		{"-payloads", "1GiB"},
		{"-payload", "32", "-payloads", "64"},
		{"-modes", "telepathy"},
		{"-modes", ""},
		{"-concurrency", "0"},
		{"-systems", "carrier-pigeon"},
		{"-transports", "smoke-signals"},
		{"-systems", "nats-pub", "-modes", "latency", "-transports", "tcp", "-mode", "everything"},
		{"-pin", "elsewhere"},
		{"-calls", "0"},
		{"-mode", "mesh", "-instances", "1"},
		{"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-payloads", "32, 1KiB,64k,1MiB", "-systems", "velo-unary,grpc-go", "-transports", "tcp,nats"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{32, 1 << 10, 64 << 10, 1 << 20}; !slices.Equal(cfg.payloads, want) {
		t.Errorf("payloads %v, want %v", cfg.payloads, want)
	}
	var names []string
	for _, s := range cfg.systems {
		names = append(names, s.Name)
	}
	if want := []string{grpcName, "velo-unary/tcp", "velo-unary/nats"}; !slices.Equal(names, want) {
		t.Errorf("systems %q, want %q", names, want)
	}

	// -quick sets what is not given; the legacy -payload still works.
	cfg, err = parseFlags([]string{"-quick", "-reps", "2", "-payload", "64"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rounds != 200 || cfg.reps != 2 || cfg.chart || !slices.Equal(cfg.payloads, []int{64}) || !slices.Equal(cfg.inFlight, []int{1, 16}) {
		t.Errorf("-quick -reps 2 -payload 64 gave %+v", cfg)
	}
	for _, s := range cfg.systems {
		if isOptional(s) {
			t.Errorf("default systems include %s", s.Name)
		}
	}
}

func TestScaled(t *testing.T) {
	for _, tc := range []struct{ n, payload, least, want int }{
		{3000, 32, 100, 3000},
		{3000, 4 << 10, 100, 3000},
		{3000, 64 << 10, 100, 187},
		{3000, 1 << 20, 100, 100},
		{50, 1 << 20, 100, 50},
	} {
		if got := scaled(tc.n, tc.payload, tc.least); got != tc.want {
			t.Errorf("scaled(%d, %d, %d) = %d, want %d", tc.n, tc.payload, tc.least, got, tc.want)
		}
	}
}

// TestMeshMode runs -mode mesh with a few instances: every call through
// .Service succeeds and the report has its figures.
func TestMeshMode(t *testing.T) {
	cfg, err := parseFlags([]string{"-mode", "mesh", "-instances", "8"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runMesh(cfg, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"every instance saw all 8", "calls through .Service", "connections made: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, &out)
		}
	}
}
