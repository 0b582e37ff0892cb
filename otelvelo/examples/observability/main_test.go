package main

import (
	"bufio"
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/velo-messenger/velo/internal/testchild"
)

// TestScrape runs the program, scrapes /metrics once its workload is done,
// parses the exposition format, and finds the handler's request counter:
// 25 calls, 5 of them answered busy.
func TestScrape(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	bin := testchild.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-addr", "127.0.0.1:0", "-calls", "25", "-serve", "30s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var url string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if u, ok := strings.CutPrefix(line, "metrics at "); ok {
			url = u
		}
		if strings.HasPrefix(line, "workload done") {
			break
		}
	}
	if url == "" {
		t.Fatal("the program printed no metrics URL")
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	counts := map[string]float64{}
	for _, name := range []string{"velo_server_requests_total", "velo_client_requests_total"} {
		mf := families[name]
		if mf == nil {
			t.Fatalf("no %s in /metrics (families: %d)", name, len(families))
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["rpc_method"] == "work" {
				counts[name+" "+labels["velo_code"]] += m.GetCounter().GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		"velo_server_requests_total ok": 20, "velo_server_requests_total busy": 5,
		"velo_client_requests_total ok": 20, "velo_client_requests_total busy": 5,
	} {
		if counts[key] != want {
			t.Errorf("%s = %v, want %v (all: %v)", key, counts[key], want, counts)
		}
	}
	if families["rpc_server_duration_seconds"] == nil {
		t.Error("no rpc_server_duration_seconds histogram")
	}
}
