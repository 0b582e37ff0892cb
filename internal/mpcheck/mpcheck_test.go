package mpcheck

import (
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

type sample struct {
	Name  string
	Data  []byte
	List  []int
	Map   map[string]float64
	Ptr   *sample
	Flag  bool
	Float float32
	Big   uint64
	Neg   int64
}

func TestCheckAcceptsWhatTheEncoderWrites(t *testing.T) {
	values := []any{
		nil, true, 1, -1, 300, -300, 1 << 40, 3.5, float32(1.5), "", "hi",
		string(make([]byte, 70000)), make([]byte, 300), []int{1, 2, 3},
		map[string]int{"a": 1}, make([]int, 70000),
		sample{Name: "x", Data: []byte{1, 2}, List: []int{1}, Map: map[string]float64{"pi": 3.14},
			Ptr: &sample{Name: "y"}, Flag: true, Float: 2, Big: 1 << 63, Neg: -1 << 40},
	}
	for _, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(b); err != nil {
			t.Errorf("Check(%T) = %v", v, err)
		}
		// Every strict prefix is refused, never passed or panicked on.
		for i := range b {
			if err := Check(b[:i]); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Check(%T prefix %d of %d) = %v, want ErrInvalid", v, i, len(b), err)
			}
		}
	}
}

func TestCheckRefusesBombs(t *testing.T) {
	for name, b := range map[string][]byte{
		"str32 4 GiB":        {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"bin32 4 GiB":        {0xc6, 0xff, 0xff, 0xff, 0xff},
		"array32 4 G":        {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"map32 4 G":          {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01},
		"ext32 4 GiB":        {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},
		"str in fixmap":      {0x81, 0xa1, 'k', 0xdb, 0x7f, 0xff, 0xff, 0xff},
		"never used 0xc1":    {0xc1},
		"fixarray too short": {0x93, 0x01},
	} {
		if err := Check(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Check = %v, want ErrInvalid", name, err)
		}
	}
	deep := make([]byte, MaxDepth+2)
	for i := range deep {
		deep[i] = 0x91 // fixarray of one
	}
	if err := Check(deep); !errors.Is(err, ErrInvalid) {
		t.Errorf("deep nesting: Check = %v, want ErrInvalid", err)
	}
}

func FuzzCheck(f *testing.F) {
	b, _ := msgpack.Marshal(sample{Name: "seed", List: []int{1, 2}})
	f.Add(b)
	f.Add([]byte{0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b) != nil {
			return
		}
		// What passes decodes without a large allocation: at most what the
		// input holds, times a small factor for Go's representation.
		var v any
		_ = msgpack.Unmarshal(b, &v)
	})
}

func BenchmarkCheck(b *testing.B) {
	p, _ := msgpack.Marshal(sample{Name: "bench", Data: make([]byte, 32), List: []int{1, 2, 3}, Map: map[string]float64{"a": 1}})
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(p); err != nil {
			b.Fatal(err)
		}
	}
}
