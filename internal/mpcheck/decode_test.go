package mpcheck

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// benchInput is a small typed handler input, the common case.
type benchInput struct {
	Name string
	Data []byte
	List []int
	Map  map[string]float64
}

// BenchmarkUnmarshal is what decoding a small typed payload from the
// network costs: the vetting and the decoding.
func BenchmarkUnmarshal(b *testing.B) {
	p, _ := msgpack.Marshal(benchInput{Name: "bench", Data: make([]byte, 32), List: []int{1, 2, 3}, Map: map[string]float64{"a": 1}})
	b.ReportAllocs()
	for b.Loop() {
		var v benchInput
		if err := Unmarshal(p, &v); err != nil {
			b.Fatal(err)
		}
	}
}
