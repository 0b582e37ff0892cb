// Package soak is velo's soak harness: several instances, each in a
// process of its own (the test binary run again as a testchild with Role),
// call each other with every pattern (AMSend, AMSync, Unary, TypedUnary)
// and with events, through fault proxies (internal/faultproxy) in the test
// process, while the test injects faults on a schedule: added latency, a
// bandwidth limit, black holes shorter than the keepalive bound, and
// resets. The Report says whether
//
//   - every call ended, with a result or a *velo.Error, within its ctx
//     deadline plus a margin: a watchdog in each child flags any call that
//     outlives it (a hang), and none may;
//   - every acknowledged AMSync (Send returned nil) was handled exactly
//     once, and no message was handled twice: receivers record the ids
//     they handled and senders the ids acknowledged, and the test compares;
//   - results were right (echo answers its bytes, add its sum, an awaited
//     event its outcome);
//   - each child's goroutines and heap returned to near their baseline
//     once the load stopped.
//
// The root package's TestSoak runs it:
//
//	func TestMain(m *testing.M) {
//		testchild.Main(map[string]func() int{soak.Role: soak.ChildMain})
//		...
//	}
//
//	func TestSoak(t *testing.T) {
//		d, err := soak.DurationFromEnv(testing.Short())
//		...
//		r := soak.Run(t, soak.Config{Duration: d})
//		t.Log(r.Summary())
//		for _, p := range r.Problems() {
//			t.Error(p)
//		}
//	}
//
// The children are controlled over velo itself: the test's messenger calls
// their soak.* control handlers on direct connections, which the faults
// never touch. Child i reaches child j through proxy (i, j): its transport
// dials the proxy whenever it is asked for j's address.
package soak
