package mpcheck

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
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

// fuzzTypes are what FuzzCheck decodes into: an interface, a struct of
// every kind of field, and the containers whose elements cost the most
// per byte.
var fuzzTypes = []reflect.Type{
	reflect.TypeFor[any](),
	reflect.TypeFor[sample](),
	reflect.TypeFor[[]string](),
	reflect.TypeFor[map[string]int](),
	reflect.TypeFor[[]*sample](),
	reflect.TypeFor[[][]any](),
	reflect.TypeFor[map[string]map[string][]byte](),
}

// FuzzCheck: on every input, Check and CheckType (into an interface) find
// the same encoding errors; a payload short enough for CheckType to pass
// it unseen is never over the bound; and what CheckType passes for any
// type decodes without allocating more than twice its estimate (msgpack
// makes slices twice), plus Slack for the decoder's own and the noise of
// other goroutines.
func FuzzCheck(f *testing.F) {
	b, _ := msgpack.Marshal(sample{Name: "seed", List: []int{1, 2}})
	f.Add(b)
	f.Add([]byte{0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xd7, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff, 0, 0, 0}) // a map inside an ext header
	f.Add(append([]byte{0xdc, 0x04, 0x00}, bytes.Repeat([]byte{0x80}, 1024)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkErr := Check(b)
		for _, typ := range fuzzTypes {
			cost, err := Cost(b, typ)
			if typ == fuzzTypes[0] && !errors.Is(err, ErrTooCostly) && (err == nil) != (checkErr == nil) {
				t.Fatalf("into any: CheckType %v, Check %v", err, checkErr)
			}
			if errors.Is(err, ErrTooCostly) && len(b) <= rootOf(typ).small {
				t.Fatalf("%d bytes into %s refused (%v), but CheckType passes payloads up to %d bytes unseen",
					len(b), typ, err, rootOf(typ).small)
			}
			if err != nil {
				continue
			}
			if got := decodeAllocated(typ, b); int64(got) > 2*cost+Slack {
				t.Fatalf("%d bytes into %s allocated %d bytes, estimate %d", len(b), typ, got, cost)
			}
		}
	})
}

// decodeAllocated decodes b into a new value of type t, as
// Unmarshal does, and returns the bytes that took.
func decodeAllocated(t reflect.Type, b []byte) uint64 {
	v := reflect.New(t).Interface()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	func() {
		defer func() { _ = recover() }() // the decoder panics on some input; Unmarshal recovers it
		_ = decode(b, v)
	}()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return after.TotalAlloc - before.TotalAlloc
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
