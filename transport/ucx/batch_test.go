package ucx

import (
	"bytes"
	"testing"

	"github.com/velo-messenger/velo/internal/wire"
)

func testFrames(sizes ...int) [][]byte {
	var out [][]byte
	for i, n := range sizes {
		f := bytes.Repeat([]byte{byte(i + 1)}, n)
		f[0] = wire.Version
		out = append(out, f)
	}
	return out
}

func TestSplitBatch(t *testing.T) {
	min := wire.HeaderLen - wire.PrefixLen
	frames := testFrames(min, 100, min+1)
	var b []byte
	for _, f := range frames {
		b = appendBatchEntry(b, f)
	}
	got, err := splitBatch(b, len(frames), 1<<20)
	if err != nil || len(got) != len(frames) {
		t.Fatalf("splitBatch = %d frames, %v", len(got), err)
	}
	for i := range got {
		if !bytes.Equal(got[i], frames[i]) || cap(got[i]) != len(got[i]) {
			t.Errorf("frame %d = %x (cap %d), want %x", i, got[i], cap(got[i]), frames[i])
		}
	}
	for _, tc := range []struct {
		name  string
		b     []byte
		count int
		limit int
	}{
		{"count 0", b, 0, 1 << 20},
		{"count over maxBatch", b, maxBatch + 1, 1 << 20},
		{"fewer frames than said", b, len(frames) + 1, 1 << 20},
		{"bytes left over", append(b[:len(b):len(b)], 0), len(frames), 1 << 20},
		{"a frame over the limit", b, len(frames), 99},
		{"a length past the end", []byte{0xff, 0xff, 0, 0, 1}, 1, 1 << 20},
		{"a frame shorter than a header", appendBatchEntry(nil, []byte{1}), 1, 1 << 20},
	} {
		if _, err := splitBatch(tc.b, tc.count, tc.limit); err == nil {
			t.Errorf("%s: splitBatch accepted it", tc.name)
		}
	}
}

// FuzzSplitBatch: whatever a peer sends as a batch message, splitBatch
// returns frames within the limit that fill it exactly, or an error; it
// never panics or reads past the message.
func FuzzSplitBatch(f *testing.F) {
	var b []byte
	for _, fr := range testFrames(20, 40) {
		b = appendBatchEntry(b, fr)
	}
	f.Add(b, 2, 1<<20)
	f.Add([]byte{}, 1, 100)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, 1, 100)
	f.Fuzz(func(t *testing.T, b []byte, count, limit int) {
		frames, err := splitBatch(b, count, limit)
		if err != nil {
			return
		}
		total := 0
		for _, fr := range frames {
			if len(fr) > limit || len(fr) < wire.HeaderLen-wire.PrefixLen {
				t.Fatalf("a frame of %d bytes with limit %d", len(fr), limit)
			}
			total += batchEntry + len(fr)
		}
		if total != len(b) || len(frames) != count {
			t.Fatalf("%d frames in %d bytes from a message of %d bytes, count %d", len(frames), total, len(b), count)
		}
	})
}
