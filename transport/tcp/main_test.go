package tcp_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/velo-messenger/velo/internal/testchild"
)

func TestMain(m *testing.M) {
	testchild.Main(map[string]func() int{childRole: runChild})
	goleak.VerifyTestMain(m)
}
