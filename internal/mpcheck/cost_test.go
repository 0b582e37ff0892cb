package mpcheck

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// decode is how velo decodes a payload once it passed CheckType
// (Unmarshal): the decoder's own allocation limits are off, since
// CheckType bounds every length already and the limits only make the
// decoder grow what it allocated in steps.
func decode(b []byte, v any) error {
	d := msgpack.NewDecoder(bytes.NewReader(b))
	d.DisableAllocLimit(true)
	return d.Decode(v)
}

// allocated returns the bytes that decoding b into a new value of type t
// allocates, measured.
func allocated(t reflect.Type, b []byte) uint64 {
	// Once first, so that msgpack's caches for the type are built. For a
	// struct behind an embedded pointer, msgpack also starts a goroutine
	// that keeps 256 of them allocated in advance, forever (cachedValue):
	// a cost per type, not per payload, which the pause leaves out.
	_ = decode(b, reflect.New(t).Interface())
	time.Sleep(10 * time.Millisecond)
	var before, after runtime.MemStats
	v := reflect.New(t).Interface()
	runtime.ReadMemStats(&before)
	_ = decode(b, v)
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return after.TotalAlloc - before.TotalAlloc
}

type costID [4]byte

func (id *costID) UnmarshalText(b []byte) error {
	_, err := hex.Decode(id[:], b)
	return err
}

type CostInner struct {
	A, B, C, D int64
	S          string
}

type costEmbedded struct {
	*CostInner
	Own []int `msgpack:"own"`
}

type costBig struct {
	Words [64]int64
	Name  string
}

type costTagged struct {
	Renamed []string `msgpack:"r,omitempty"`
	Skipped []string `msgpack:"-"`
	Alias   []int    `msgpack:"x,alias:y"`
	private []byte
}

// rawArray is an array32 of n copies of elem.
func rawArray(n int, elem ...byte) []byte {
	b := []byte{0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	return append(b, bytes.Repeat(elem, n)...)
}

// rawField is a one-entry map {name: value}.
func rawField(name string, value []byte) []byte {
	b := append([]byte{0x81, 0xa0 | byte(len(name))}, name...)
	return append(b, value...)
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type costCase struct {
	name    string
	typ     reflect.Type
	payload []byte
	costly  bool // refused with ErrTooCostly
}

func costCases(t *testing.T) []costCase {
	many := func(n int, f func(i int) string) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = f(i)
		}
		return s
	}
	ints := make([]int, 50000)
	for i := range ints {
		ints[i] = i % 100
	}
	strMap := make(map[string]int, 5000)
	anyMap := make(map[string]any, 2000)
	for i := range 5000 {
		strMap[strings.Repeat("k", i%7)+string(rune('a'+i%26))+hex.EncodeToString([]byte{byte(i), byte(i >> 8)})] = i
	}
	for i := range 2000 {
		anyMap[hex.EncodeToString([]byte{byte(i), byte(i >> 8)})] = []any{i, "v", 1.5}
	}
	tags := func(n int) []byte { return rawField("Tags", rawArray(n, 0xa0)) }
	type withTags struct{ Tags []string }
	return []costCase{
		{"sample", reflect.TypeFor[sample](), mustMarshal(t, sample{Name: "x", Data: []byte{1, 2}, List: []int{1, 2, 3},
			Map: map[string]float64{"pi": 3.14}, Ptr: &sample{Name: "y", List: make([]int, 100)}, Flag: true}), false},
		{"ints", reflect.TypeFor[[]int](), mustMarshal(t, ints), false},
		{"short strings", reflect.TypeFor[[]string](), mustMarshal(t, many(20000, func(i int) string { return "abc" })), false},
		{"long strings", reflect.TypeFor[[]string](), mustMarshal(t, many(100, func(i int) string { return strings.Repeat("x", 1000+i) })), false},
		{"byte slices", reflect.TypeFor[[][]byte](), mustMarshal(t, [][]byte{make([]byte, 100000), make([]byte, 3)}), false},
		{"string map", reflect.TypeFor[map[string]int](), mustMarshal(t, strMap), false},
		{"any map", reflect.TypeFor[map[string]any](), mustMarshal(t, anyMap), false},
		{"any", reflect.TypeFor[any](), mustMarshal(t, anyMap), false},
		{"string string map", reflect.TypeFor[map[string]string](), mustMarshal(t, map[string]string{"a": "b", "cc": strings.Repeat("d", 5000)}), false},
		{"int keys", reflect.TypeFor[map[int]*CostInner](), mustMarshal(t, map[int]*CostInner{1: {A: 1}, 2: nil, 3: {S: "s"}}), false},
		{"times", reflect.TypeFor[[]time.Time](), mustMarshal(t, []time.Time{time.Unix(1, 2), time.Unix(3e9, 0)}), false},
		{"text unmarshaler", reflect.TypeFor[[]costID](), mustMarshal(t, []string{"01020304", "a0b0c0d0"}), false},
		{"raw message", reflect.TypeFor[[]msgpack.RawMessage](), mustMarshal(t, []any{[]int{1, 2, 3}, "x", map[string]int{"a": 1}}), false},
		{"embedded pointer", reflect.TypeFor[costEmbedded](), mustMarshal(t, costEmbedded{CostInner: &CostInner{A: 1, S: "x"}, Own: []int{1}}), false},
		{"tags and aliases", reflect.TypeFor[costTagged](), append(append([]byte{0x83}, rawField("r", rawArray(100, 0xa0))[1:]...),
			append(rawField("y", rawArray(1000, 0x01))[1:], rawField("Skipped", rawArray(5000, 0xa0))[1:]...)...), false},
		{"nested", reflect.TypeFor[[][]int](), mustMarshal(t, [][]int{{1, 2}, {}, make([]int, 1000)}), false},
		{"arrays", reflect.TypeFor[[][4]int](), mustMarshal(t, [][4]int{{1, 2, 3, 4}, {5}}), false},
		{"byte arrays", reflect.TypeFor[[][16]byte](), mustMarshal(t, [][16]byte{{1}, {2}}), false},
		{"unknown fields", reflect.TypeFor[struct{ A int }](), rawField("B", rawArray(100000, 0x90)), false},

		// What a few bytes make large.
		{"tags 8 K", reflect.TypeFor[withTags](), tags(8 << 10), false},
		{"tags 1 M", reflect.TypeFor[withTags](), tags(1 << 20), true},
		{"empty strings", reflect.TypeFor[[]string](), rawArray(100000, 0xa0), true},
		{"nil big structs", reflect.TypeFor[[]costBig](), rawArray(2000, 0xc0), true},
		{"empty big structs", reflect.TypeFor[[]costBig](), rawArray(2000, 0x80), true},
		{"pointers to big structs", reflect.TypeFor[[]*costBig](), rawArray(2000, 0x80), true},
		{"few pointers to big structs", reflect.TypeFor[[]*costBig](), rawArray(100, 0x80), false},
		{"nil pointers", reflect.TypeFor[[]*costBig](), rawArray(100000, 0xc0), false},
		{"empty slices", reflect.TypeFor[[][]int](), rawArray(100000, 0x90), true},
		{"empty maps", reflect.TypeFor[[]map[string]int](), rawArray(10000, 0x80), true},
		{"any empty arrays", reflect.TypeFor[any](), rawArray(100000, 0x90), true},
		{"any small ints", reflect.TypeFor[[]any](), rawArray(100000, 0x01), true},
		{"any few small ints", reflect.TypeFor[[]any](), rawArray(2000, 0x01), false},
		{"any wide ints", reflect.TypeFor[[]any](), rawArray(100000, 0xcd, 1, 1), false},
		// msgpack reads a map inside an ext header from the ext's data on:
		// an 8-byte ext whose data announces 4 G entries.
		{"ext map", reflect.TypeFor[map[string]int](), []byte{0xd7, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff, 0, 0, 0}, false},
		{"ext map in struct", reflect.TypeFor[struct{ M map[string]string }](),
			rawField("M", []byte{0xd7, 0x01, 0xdf, 0x00, 0x00, 0x00, 0x01, 0xa0, 0xa0, 0x00}), false},
		{"ext map of empty maps", reflect.TypeFor[map[string]map[string]int](),
			append([]byte{0xd7, 0x01, 0xdf, 0x00, 0x00, 0x40, 0x00}, bytes.Repeat([]byte{0xa0, 0x80}, 1<<14)...), true},
	}
}

// TestCostBoundsWhatDecodingAllocates holds the estimate above what msgpack
// really allocates, for every shape of type, and checks which payloads
// are refused.
func TestCostBoundsWhatDecodingAllocates(t *testing.T) {
	for _, c := range costCases(t) {
		t.Run(c.name, func(t *testing.T) {
			cost, err := Cost(c.payload, c.typ)
			budget := Growth*int64(len(c.payload)) + Slack
			if c.costly {
				if !errors.Is(err, ErrTooCostly) {
					t.Fatalf("%d bytes into %s: cost %d, %v; want ErrTooCostly (budget %d)", len(c.payload), c.typ, cost, err, budget)
				}
				return
			}
			if errors.Is(err, ErrTooCostly) {
				t.Fatalf("%d bytes into %s refused: %v (cost so far %d, budget %d)", len(c.payload), c.typ, err, cost, budget)
			}
			if err != nil {
				// Invalid for the decoder too: its cost is still bounded.
				t.Logf("%s: %v", c.name, err)
				return
			}
			got := allocated(c.typ, c.payload)
			t.Logf("%d bytes into %s: estimate %d, allocated %d, budget %d", len(c.payload), c.typ, cost, got, budget)
			// msgpack makes slices twice and map entries in passing; the
			// decoder and its reader take a few hundred bytes of their own.
			if int64(got) > 2*cost+1024 {
				t.Errorf("%d bytes into %s allocated %d bytes, more than twice the estimate %d", len(c.payload), c.typ, got, cost)
			}
		})
	}
}

// TestCostRefusesBeforeWalkingOn: a payload is refused as soon as its
// estimate passes the budget, without reading the rest.
func TestCostRefusesBeforeWalkingOn(t *testing.T) {
	b := rawArray(1<<20, 0xa0)
	b[len(b)-1] = 0xc1 // never used in MessagePack: never read
	if _, err := Cost(b, reflect.TypeFor[[]string]()); !errors.Is(err, ErrTooCostly) {
		t.Fatalf("Cost = %v, want ErrTooCostly", err)
	}
}

// TestCostAgreesWithCheck: on valid and invalid encodings alike, CheckType
// finds the encoding errors Check finds, whatever the type.
func TestCostAgreesWithCheck(t *testing.T) {
	types := []reflect.Type{reflect.TypeFor[any](), reflect.TypeFor[sample](), reflect.TypeFor[[]string]()}
	for _, v := range []any{nil, 1, "hi", []int{1, 2}, map[string]int{"a": 1},
		sample{Name: "x", List: []int{1}, Map: map[string]float64{"a": 1}, Ptr: &sample{}}} {
		b, _ := msgpack.Marshal(v)
		for i := range len(b) + 1 {
			want := Check(b[:i])
			for _, typ := range types {
				got := CheckType(b[:i], typ)
				if errors.Is(got, ErrTooCostly) {
					t.Fatalf("%T prefix %d into %s: %v", v, i, typ, got)
				}
				if (want == nil) != (got == nil) && typ == types[0] {
					t.Errorf("%T prefix %d of %d into %s: CheckType %v, Check %v", v, i, len(b), typ, got, want)
				}
				if want != nil && got == nil {
					t.Errorf("%T prefix %d of %d into %s: Check refuses (%v), CheckType accepts", v, i, len(b), typ, want)
				}
			}
		}
	}
}

// TestCostDepthAsCheck: CheckType refuses nesting where Check does, for an
// interface and for a recursive type alike.
func TestCostDepthAsCheck(t *testing.T) {
	type node struct{ Kids []node }
	for _, n := range []int{MaxDepth - 2, MaxDepth - 1, MaxDepth, MaxDepth + 1} {
		for _, inner := range [][]byte{{0x90}, {0x91, 0x01}, {0x80}} {
			b := append(bytes.Repeat([]byte{0x91}, n), inner...)
			want := Check(b)
			if got := CheckType(b, reflect.TypeFor[any]()); (got == nil) != (want == nil) {
				t.Errorf("%d arrays around % x into any: CheckType %v, Check %v", n, inner, got, want)
			}
		}
		// The same depth as a tree of nodes: {"Kids": [{"Kids": [...]}]}.
		var b []byte
		for range n / 2 {
			b = append(b, 0x81, 0xa4, 'K', 'i', 'd', 's', 0x91)
		}
		b = append(b, 0x80)
		want := Check(b)
		if got := CheckType(b, reflect.TypeFor[node]()); (got == nil) != (want == nil) {
			t.Errorf("tree of depth %d: CheckType %v, Check %v", n, got, want)
		}
	}
}

// TestCostPointerToItself: a type that points to itself ends the walk
// instead of looping (msgpack itself would recurse until the stack
// overflows).
func TestCostPointerToItself(t *testing.T) {
	type P *P
	if err := CheckType([]byte{0x01}, reflect.TypeFor[P]()); !errors.Is(err, ErrInvalid) {
		t.Errorf("CheckType = %v, want ErrInvalid", err)
	}
	if err := CheckType([]byte{0xc0}, reflect.TypeFor[P]()); err != nil {
		t.Errorf("nil: CheckType = %v", err)
	}
}

// TestCostSmallPayloads: the payloads CheckType passes without an
// estimate, because no encoding that short can reach the bound, are never
// over it: the most costly encodings of each length, for types whose
// elements cost the most per byte.
func TestCostSmallPayloads(t *testing.T) {
	type pair struct{ Big *costBig }
	for _, c := range []struct {
		typ  reflect.Type
		elem []byte
	}{
		{reflect.TypeFor[any](), []byte{0x81, 0xa0, 0x80}},
		{reflect.TypeFor[[]map[string]any](), []byte{0x81, 0xa0, 0xc0}},
		{reflect.TypeFor[[]any](), []byte{0x80}},
		{reflect.TypeFor[[]costBig](), []byte{0xc0}},
		{reflect.TypeFor[[]*costBig](), []byte{0x80}},
		{reflect.TypeFor[[]pair](), []byte{0x81, 0xa3, 'B', 'i', 'g', 0x80}},
		{reflect.TypeFor[[]string](), []byte{0xa0}},
	} {
		r := rootOf(c.typ)
		n := (r.small - 5) / len(c.elem)
		if n <= 0 {
			t.Logf("%s: no payload is small enough (limit %d bytes)", c.typ, r.small)
			continue
		}
		b := rawArray(n, c.elem...)
		cost, err := Cost(b, c.typ)
		t.Logf("%s: payloads up to %d bytes pass unseen; %d elements of % x: %d bytes, cost %d, budget %d",
			c.typ, r.small, n, c.elem, len(b), cost, Growth*len(b)+Slack)
		if err != nil {
			t.Errorf("%s: %d bytes: %v", c.typ, len(b), err)
		}
	}
	if n := rootOf(reflect.TypeFor[sample]()).small; n < 100 {
		t.Errorf("sample: payloads up to %d bytes pass without an estimate, want at least 100", n)
	}
}

func BenchmarkCheckType(b *testing.B) {
	p, _ := msgpack.Marshal(sample{Name: "bench", Data: make([]byte, 32), List: []int{1, 2, 3}, Map: map[string]float64{"a": 1}})
	typ := reflect.TypeFor[sample]()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckType(p, typ); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckTypeWalk: a payload too long for CheckType to pass
// unseen (a struct with 1000 numbers and a map of 100, about 4 KB) is
// walked with its type; Check walks it blind.
func BenchmarkCheckTypeWalk(b *testing.B) {
	v := sample{Name: "bench", List: make([]int, 1000), Map: map[string]float64{}}
	for i := range v.List {
		v.List[i] = i
	}
	for i := range 100 {
		v.Map[strings.Repeat("k", i%10)+hex.EncodeToString([]byte{byte(i)})] = float64(i)
	}
	p, _ := msgpack.Marshal(v)
	typ := reflect.TypeFor[sample]()
	if len(p) <= rootOf(typ).small {
		b.Fatalf("payload of %d bytes passes unseen", len(p))
	}
	b.Run("Check", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if err := Check(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CheckType", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if err := CheckType(p, typ); err != nil {
				b.Fatal(err)
			}
		}
	})
}
