package transporttest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/velo-messenger/velo/transport"
)

// CheckOptions checks what a transport built from options says of them:
// with want empty, that it finds them valid; else that its Validate
// returns an error whose text holds want ("velo: tcp: negative MaxConns
// -1"), and that Listen and Dial refuse to run with that same error. It
// closes tr.
func CheckOptions(t testing.TB, tr transport.Transport, want string) {
	t.Helper()
	defer tr.Close()
	v, ok := tr.(transport.Validator)
	if !ok {
		t.Fatalf("%T does not implement transport.Validator", tr)
	}
	err := v.Validate()
	if want == "" {
		if err != nil {
			t.Errorf("Validate = %v, want nil", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Validate = %v, want an error with %q", err, want)
	}
	ctx := context.Background()
	if _, lerr := tr.Listen(ctx, nil); !errors.Is(lerr, err) {
		t.Errorf("Listen = %v, want %v", lerr, err)
	}
	if _, derr := tr.Dial(ctx, "unused", nil); !errors.Is(derr, err) {
		t.Errorf("Dial = %v, want %v", derr, err)
	}
}
