package mem_test

import (
	"strings"
	"testing"

	"github.com/velo-messenger/velo/transport/mem"
	"github.com/velo-messenger/velo/transport/transporttest"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts mem.Options
		want string // "" for valid options; else a part of the error
	}{
		{"zero", mem.Options{}, ""},
		{"negative max frame", mem.Options{MaxFrame: -1}, "velo: mem: negative MaxFrame -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			transporttest.CheckOptions(t, mem.New(mem.NewNetwork(), tc.opts), tc.want)
		})
	}
}
