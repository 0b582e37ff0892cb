package tcp_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild() // a peer process started by a test; never returns
	}
	goleak.VerifyTestMain(m)
}
