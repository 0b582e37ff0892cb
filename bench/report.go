package main

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine describes where the bench ran, in one line.
func machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs (GOMAXPROCS %d), %s, CPU: %s",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), cpuModel())
}

// cpuModel reads the CPU model from /proc/cpuinfo, where there is one.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// x86 says "model name"; some arm64 kernels say "Model" or only
		// "CPU part".
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name", "Model", "Hardware":
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return "unknown"
}

// us formats a duration in microseconds.
func us(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64)
}

func ratioString(r float64) string {
	if r == 0 {
		return "–"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "×"
}

// writeTable prints the summaries as a Markdown table.
func writeTable(w io.Writer, sums []summary) {
	fmt.Fprintln(w, "| system | p50 µs (min–max) | p90 µs | p99 µs | max µs | calls/s | p50 ratio to "+floorName+" |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, s := range sums {
		fmt.Fprintf(w, "| %s | %s (%s–%s) | %s | %s | %s | %.0f | %s |\n",
			s.system, us(s.p50), us(s.p50min), us(s.p50max), us(s.p90), us(s.p99), us(s.max),
			s.rate, ratioString(s.ratio))
	}
}

// csvHeader names the columns of latency.csv; times are in microseconds.
var csvHeader = []string{
	"system", "reps", "rounds", "warmup", "payload_bytes", "pin",
	"p50_us", "p50_min_us", "p50_max_us", "p90_us", "p99_us", "max_us",
	"calls_per_s", "p50_ratio_to_" + floorName,
}

// writeCSV writes the summaries to dir/latency.csv, creating dir.
func writeCSV(dir string, cfg config, sums []summary) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "latency.csv")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := csv.NewWriter(f)
	w.Write(csvHeader)
	for _, s := range sums {
		ratio := ""
		if s.ratio != 0 {
			ratio = strconv.FormatFloat(s.ratio, 'f', 3, 64)
		}
		w.Write([]string{
			s.system, strconv.Itoa(s.reps), strconv.Itoa(cfg.rounds), strconv.Itoa(cfg.warmup), strconv.Itoa(cfg.payload), cfg.pin,
			us(s.p50), us(s.p50min), us(s.p50max), us(s.p90), us(s.p99), us(s.max),
			strconv.FormatFloat(s.rate, 'f', 0, 64), ratio,
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}
