package wire_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/velo-messenger/velo/internal/wire"
)

func TestStampTimeout(t *testing.T) {
	req := wire.Request{Kind: wire.KindUnary, ID: 7, Timeout: time.Second, Handler: "h", Headers: map[string]string{"k": "v"}, Payload: []byte("p")}
	b := wire.AppendRequest(nil, &req)
	if !wire.IsTimedRequest(b) {
		t.Fatal("a request with a timeout is not timed")
	}
	wire.StampTimeout(b, 250*time.Millisecond)
	_, body, err := wire.ParseHeader(b[wire.PrefixLen:])
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.ParseRequest(body, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := req
	want.Timeout = 250 * time.Millisecond
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after stamping: %+v, want %+v", got, want)
	}
	wire.StampTimeout(b, -time.Second)
	if got, _ := wire.ParseRequest(body, wire.Limits{}); got.Timeout != 1 {
		t.Fatalf("an expired deadline is stamped %v, want 1 ns", got.Timeout)
	}
	untimed := wire.AppendRequest(nil, &wire.Request{Kind: wire.KindAMSend, Handler: "h"})
	if wire.IsTimedRequest(untimed) || wire.IsTimedRequest(wire.AppendPing(nil, false, 1)) || wire.IsTimedRequest(wire.AppendResponse(nil, &wire.Response{ID: 1})) {
		t.Fatal("an untimed request, a ping or a response counts as timed")
	}
}
