package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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

// TestBenchSmoke builds the bench command and runs it briefly, so that
// `make test` notices when the bench stops working: every system must
// show in the table and in the CSV.
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
	cmd := exec.Command(bin, "-rounds", "200", "-warmup", "20", "-reps", "1", "-out", outDir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	table := stdout.String()
	if !strings.Contains(table, "machine: ") {
		t.Errorf("no machine line in:\n%s", table)
	}
	for _, s := range allSystems() {
		if !strings.Contains(table, "| "+s.Name()+" |") {
			t.Errorf("no row for %s in:\n%s", s.Name(), table)
		}
	}

	f, err := os.Open(filepath.Join(outDir, "latency.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(allSystems()) {
		t.Fatalf("latency.csv has %d rows, want a header and %d systems: %q", len(rows), len(allSystems()), rows)
	}
	for i, s := range allSystems() {
		if rows[1+i][0] != s.Name() {
			t.Errorf("csv row %d is %q, want %s", 1+i, rows[1+i][0], s.Name())
		}
	}

	if runtime.GOOS == "linux" && runtime.NumCPU() >= 2 {
		// Pinning re-places the bench between starting the servers and
		// connecting to them; check that a pinned run still works.
		out, err := exec.Command(bin, "-rounds", "50", "-warmup", "5", "-reps", "1", "-pin", pinSplit,
			"-systems", floorName+",velo-unary", "-out", outDir).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "| velo-unary |") || !strings.Contains(string(out), "client to CPU") {
			t.Errorf("pinned run: %v\n%s", err, out)
		}
	}
}

func TestFlagsRejectNonsense(t *testing.T) {
	for _, args := range [][]string{
		{"-rounds", "0"},
		{"-reps", "0"},
		{"-warmup", "-1"},
		{"-payload", "-1"},
		{"-systems", "carrier-pigeon"},
		{"-pin", "elsewhere"},
		{"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
