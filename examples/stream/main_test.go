package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStreamToTheEnd(t *testing.T) {
	var out strings.Builder
	if err := run(&out, 5000, 16<<10, 0); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"consumer: 5000 tokens in order", "producer: closed the stream"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestStreamCancelled(t *testing.T) {
	var out strings.Builder
	if err := run(&out, 1_000_000, 16<<10, 100); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"consumer: 100 tokens in order", "producer: producer stopped after", "cancelled by its receiver"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
