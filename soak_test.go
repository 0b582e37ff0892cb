package velo_test

import (
	"testing"

	"github.com/velo-messenger/velo/internal/soak"
)

// TestSoak runs the soak harness (internal/soak: instances in child
// processes calling each other with every pattern through fault proxies,
// faults on a schedule) for soak.Env (VELO_SOAK=5m; make soak), by
// default for 60 s: the smoke run that make test (and so CI) includes.
// Under -short it runs 10 s. The summary line is logged (go test -v shows
// it); each broken property fails the test.
func TestSoak(t *testing.T) {
	d, err := soak.DurationFromEnv(testing.Short())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("soak: for %v", d)
	r := soak.Run(t, soak.Config{Duration: d})
	t.Log(r.Summary())
	for _, p := range r.Problems() {
		t.Error(p)
	}
}
