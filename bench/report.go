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

func rateString(r float64) string { return strconv.FormatFloat(r, 'f', 0, 64) }

// result is one system's summary in one cell.
type result struct {
	cell     cell
	sys      System
	sum      summary
	bestPeer string // the peer velo is compared with in this cell
}

// results are a run's summaries, cell by cell, each cell's rows in the
// order of the systems.
type results struct {
	cells []cell
	rows  []result
}

// collect aggregates every contender's samples and sets the ratios: in
// the latency mode p50 ÷ the other's p50 (lower is better), elsewhere the
// rate ÷ the other's rate (higher is better). The best peer is the one
// with the lowest p50, or the highest rate, in the same cell.
func collect(cells []cell, cs []*contender) results {
	var res results
	for _, ce := range cells {
		start := len(res.rows)
		for _, c := range cs {
			if s := c.samples[ce]; len(s) > 0 {
				res.rows = append(res.rows, result{cell: ce, sys: c.sys, sum: aggregate(c.sys.Name, s)})
			}
		}
		if len(res.rows) > start {
			res.cells = append(res.cells, ce)
		}
		setRatios(res.rows[start:])
	}
	return res
}

// setRatios fills the ratios of the rows of one cell.
func setRatios(rows []result) {
	if len(rows) == 0 {
		return
	}
	latency := rows[0].cell.mode == modeLatency
	figure := func(s summary) float64 {
		if latency {
			return float64(s.p50)
		}
		return s.rate
	}
	better := func(a, b float64) bool {
		if latency {
			return a < b
		}
		return a > b
	}
	var floor float64
	var best *result
	for i := range rows {
		r := &rows[i]
		if r.sys.Name == floorName {
			floor = figure(r.sum)
		}
		if r.sys.Peer && figure(r.sum) > 0 && (best == nil || better(figure(r.sum), figure(best.sum))) {
			best = r
		}
	}
	for i := range rows {
		r := &rows[i]
		f := figure(r.sum)
		if floor > 0 && f > 0 {
			r.sum.ratio = f / floor
		}
		if best != nil && r.sys.isVelo() && f > 0 {
			r.sum.ratioPeer = f / figure(best.sum)
			r.bestPeer = best.sys.Name
		}
	}
}

// in returns the rows of one cell.
func (res results) in(ce cell) []result {
	var out []result
	for _, r := range res.rows {
		if r.cell == ce {
			out = append(out, r)
		}
	}
	return out
}

// find returns the row of a system in a cell.
func (res results) find(ce cell, system string) (result, bool) {
	for _, r := range res.rows {
		if r.cell == ce && r.sys.Name == system {
			return r, true
		}
	}
	return result{}, false
}

// noisy names the rows whose figure varied beyond noisySpread.
func (res results) noisy() []string {
	var out []string
	for _, r := range res.rows {
		if r.sum.noisy() {
			out = append(out, fmt.Sprintf("%s (%s)", r.sys.Name, r.cell))
		}
	}
	return out
}

// distinct returns the distinct values of f over the cells of a mode, in
// order of appearance.
func (res results) distinct(mode string, f func(cell) int) []int {
	var out []int
	seen := make(map[int]bool)
	for _, ce := range res.cells {
		if ce.mode == mode && !seen[f(ce)] {
			seen[f(ce)] = true
			out = append(out, f(ce))
		}
	}
	return out
}

// systemsOf lists the systems measured in the cells of a mode, in order.
func (res results) systemsOf(mode string) []System {
	var out []System
	seen := make(map[string]bool)
	for _, r := range res.rows {
		if r.cell.mode == mode && !seen[r.sys.Name] {
			seen[r.sys.Name] = true
			out = append(out, r.sys)
		}
	}
	return out
}

func transportCell(s System) string {
	if s.Transport == "" {
		return "–"
	}
	return s.Transport
}

// writeTables prints the results as Markdown: per payload a latency table
// and a throughput table, then one table of the streams.
func writeTables(w io.Writer, res results) {
	payloadOf := func(c cell) int { return c.payload }
	for _, p := range res.distinct(modeLatency, payloadOf) {
		ce := cell{mode: modeLatency, inFlight: 1, payload: p}
		rows := res.in(ce)
		fmt.Fprintf(w, "\n### Latency, one call at a time, %s payload\n\n", sizeString(p))
		fmt.Fprintf(w, "Microseconds. Ratios: p50 ÷ the other's p50 (lower is better); best peer: %s.\n\n", bestPeerOf(rows))
		fmt.Fprintln(w, "| system | transport | p50 (min–max) | p90 | p99 | max | calls/s | ÷ floor | ÷ best peer |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range rows {
			s := r.sum
			fmt.Fprintf(w, "| %s | %s | %s (%s–%s) | %s | %s | %s | %s | %s | %s |\n",
				r.sys.Family, transportCell(r.sys), us(s.p50), us(s.p50min), us(s.p50max),
				us(s.p90), us(s.p99), us(s.max), rateString(s.rate), ratioString(s.ratio), ratioString(s.ratioPeer))
		}
	}

	levels := res.distinct(modeConcurrent, func(c cell) int { return c.inFlight })
	for _, p := range res.distinct(modeConcurrent, payloadOf) {
		fmt.Fprintf(w, "\n### Throughput with calls in flight, %s payload\n\n", sizeString(p))
		var best []string
		head := "| system | transport |"
		rule := "|---|---|"
		for _, n := range levels {
			ce := cell{mode: modeConcurrent, inFlight: n, payload: p}
			best = append(best, fmt.Sprintf("%s at %d", bestPeerOf(res.in(ce)), n))
			head += fmt.Sprintf(" %d in flight: calls/s (min–max) | p99 µs | ÷ floor | ÷ best peer |", n)
			rule += "---:|---:|---:|---:|"
		}
		fmt.Fprintf(w, "Calls per second, and the p99 of one call's latency. Ratios: calls/s ÷ the other's (higher is better); best peer: %s.\n\n", strings.Join(best, ", "))
		fmt.Fprintln(w, head)
		fmt.Fprintln(w, rule)
		for _, sys := range res.systemsOf(modeConcurrent) {
			line := fmt.Sprintf("| %s | %s |", sys.Family, transportCell(sys))
			for _, n := range levels {
				r, ok := res.find(cell{mode: modeConcurrent, inFlight: n, payload: p}, sys.Name)
				if !ok {
					line += " | | | |"
					continue
				}
				s := r.sum
				line += fmt.Sprintf(" %s (%s–%s) | %s | %s | %s |", rateString(s.rate), rateString(s.rateMin), rateString(s.rateMax),
					us(s.p99), ratioString(s.ratio), ratioString(s.ratioPeer))
			}
			fmt.Fprintln(w, line)
		}
	}

	payloads := res.distinct(modeStream, payloadOf)
	if len(payloads) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### One-way stream, one sender\n\n")
	var best []string
	head := "| system | transport |"
	rule := "|---|---|"
	for _, p := range payloads {
		ce := cell{mode: modeStream, inFlight: 1, payload: p}
		best = append(best, fmt.Sprintf("%s at %s", bestPeerOf(res.in(ce)), sizeString(p)))
		head += fmt.Sprintf(" %s: msgs/s (min–max) | ÷ floor | ÷ best peer |", sizeString(p))
		rule += "---:|---:|---:|"
	}
	fmt.Fprintf(w, "Messages per second, counted as received by the server (the sender ends with a barrier that waits for the count). The floor writes each frame with one system call. Ratios: msgs/s ÷ the other's (higher is better); best peer: %s.\n\n", strings.Join(best, ", "))
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, sys := range res.systemsOf(modeStream) {
		line := fmt.Sprintf("| %s | %s |", sys.Family, transportCell(sys))
		for _, p := range payloads {
			r, ok := res.find(cell{mode: modeStream, inFlight: 1, payload: p}, sys.Name)
			if !ok {
				line += " | | |"
				continue
			}
			s := r.sum
			line += fmt.Sprintf(" %s (%s–%s) | %s | %s |", rateString(s.rate), rateString(s.rateMin), rateString(s.rateMax),
				ratioString(s.ratio), ratioString(s.ratioPeer))
		}
		fmt.Fprintln(w, line)
	}
}

// bestPeerOf names the best peer the velo rows of a cell were compared
// with, or "none".
func bestPeerOf(rows []result) string {
	for _, r := range rows {
		if r.bestPeer != "" {
			return r.bestPeer
		}
	}
	return "none"
}

// csvHeader names the columns of bench.csv; times are in microseconds.
var csvHeader = []string{
	"mode", "in_flight", "payload_bytes", "system", "family", "transport",
	"reps", "ops", "pin",
	"p50_us", "p50_min_us", "p50_max_us", "p90_us", "p99_us", "max_us",
	"rate_per_s", "rate_min_per_s", "rate_max_per_s",
	"ratio_to_floor", "ratio_to_best_peer", "best_peer", "noisy",
}

// csvFile is the name of the results file in the -out folder.
const csvFile = "bench.csv"

// writeCSV writes the results to dir/bench.csv, creating dir.
func writeCSV(dir string, cfg config, res results) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, csvFile)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	ratio := func(r float64) string {
		if r == 0 {
			return ""
		}
		return strconv.FormatFloat(r, 'f', 3, 64)
	}
	w := csv.NewWriter(f)
	w.Write(csvHeader)
	for _, r := range res.rows {
		s := r.sum
		w.Write([]string{
			r.cell.mode, strconv.Itoa(r.cell.inFlight), strconv.Itoa(r.cell.payload),
			r.sys.Name, r.sys.Family, r.sys.Transport,
			strconv.Itoa(s.reps), strconv.Itoa(s.ops), cfg.pin,
			us(s.p50), us(s.p50min), us(s.p50max), us(s.p90), us(s.p99), us(s.max),
			rateString(s.rate), rateString(s.rateMin), rateString(s.rateMax),
			ratio(s.ratio), ratio(s.ratioPeer), r.bestPeer, strconv.FormatBool(s.noisy()),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}
