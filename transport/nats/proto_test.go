package nats

import (
	"bytes"
	"strings"
	"testing"
)

func TestMessagesRoundTrip(t *testing.T) {
	id, win, subj, err := parseOpen(appendOpen(nil, 7, 1<<20, "velo.in.abc"))
	if err != nil || id != 7 || win != 1<<20 || subj != "velo.in.abc" {
		t.Errorf("open: %d %d %q %v", id, win, subj, err)
	}
	id, win, err = parseAccept(appendAccept(nil, 9, 42))
	if err != nil || id != 9 || win != 42 {
		t.Errorf("accept: %d %d %v", id, win, err)
	}
	m := append(appendDataHeader(nil, 3, 5), "frame"...)
	id, seq, frame, err := parseData(m)
	if err != nil || id != 3 || seq != 5 || !bytes.Equal(frame, []byte("frame")) {
		t.Errorf("data: %d %d %q %v", id, seq, frame, err)
	}
	id, n, err := parseWindow(appendWindow(nil, 4, 1000))
	if err != nil || id != 4 || n != 1000 {
		t.Errorf("window: %d %d %v", id, n, err)
	}
	long := strings.Repeat("x", 1000)
	id, reason, err := parseClose(appendClose(nil, 8, long))
	if err != nil || id != 8 || len(reason) != maxReasonLen {
		t.Errorf("close: %d %d-byte reason %v", id, len(reason), err)
	}
}

func TestMessagesRefuseShortInput(t *testing.T) {
	open := appendOpen(nil, 1, 1, "s")
	for n := range len(open) - 1 {
		if _, _, _, err := parseOpen(open[:n]); err == nil {
			t.Errorf("open of %d bytes parsed", n)
		}
	}
	bad := appendOpen(nil, 1, 1, "s")
	bad[1] = 99
	if _, _, _, err := parseOpen(bad); err == nil {
		t.Error("open of another version parsed")
	}
	acc := appendAccept(nil, 1, 1)
	if _, _, err := parseAccept(acc[:len(acc)-1]); err == nil {
		t.Error("short accept parsed")
	}
	if _, _, _, err := parseData(appendDataHeader(nil, 1, 1)[:dataHeaderLen-1]); err == nil {
		t.Error("short data parsed")
	}
	if _, _, err := parseWindow(appendWindow(nil, 1, 1)[:windowMsgLen-1]); err == nil {
		t.Error("short window parsed")
	}
	if _, _, err := parseClose([]byte{kindClose, 1}); err == nil {
		t.Error("short close parsed")
	}
}
