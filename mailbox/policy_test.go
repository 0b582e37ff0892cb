package mailbox_test

import (
	"testing"

	"github.com/velo-messenger/velo/mailbox"
)

func TestPolicyString(t *testing.T) {
	tests := []struct {
		p    mailbox.Policy
		want string
		ok   bool
	}{
		{mailbox.Block, "block", true},
		{mailbox.Reject, "reject", true},
		{mailbox.Policy(9), "Policy(9)", false},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("Policy(%d).String() = %q, want %q", int(tt.p), got, tt.want)
		}
		if got := tt.p.Valid(); got != tt.ok {
			t.Errorf("Policy(%d).Valid() = %v, want %v", int(tt.p), got, tt.ok)
		}
	}
}
