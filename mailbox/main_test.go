package mailbox_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// long bounds waits that only end early when the code under test is broken;
// it is generous so that a loaded machine never trips it.
const long = 10 * time.Second
