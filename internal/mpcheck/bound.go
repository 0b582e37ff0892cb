package mpcheck

import (
	"reflect"
	"sync"
)

// A payload too short to reach the bound, whatever it holds, needs no
// estimate: validating it is enough. smallLen finds how short that is for
// a type, from the most that one byte of a payload can cost when decoded
// into it.
//
// Every cost the walker adds is charged to one byte of the payload:
//
//   - to the type byte of a value, its own fixed costs (a box, a map's
//     header and first group, a pointer's target, the rounding of an
//     allocation) and its slot in its container (a slice element's size
//     and rounding, a map entry's slots, charged to the key);
//   - to each data byte of a string, binary or ext, at most 2.5 bytes
//     (the copy and its rounding, twice for an ext), plus 1 for the
//     decoder's scratch buffer, and 1 more inside a value given to a
//     type's own decoding method (its raw bytes).
//
// So a payload of n bytes costs at most n times the largest charge of any
// byte, and when that is below the bound for n, Cost would pass it.

// dataCharge bounds what one data byte costs: 2.5 for the copy of an ext's
// data, 1 for the scratch buffer, 1 for a method's raw bytes.
const dataCharge = 5

// A root is a type CheckType decodes into: its shape, and the length up
// to which any payload costs less than its bound.
type root struct {
	shape *shape
	small int
}

// roots caches the roots by type.
var roots sync.Map // reflect.Type -> *root

func rootOf(t reflect.Type) *root {
	if r, ok := roots.Load(t); ok {
		return r.(*root)
	}
	s := shapeOf(t)
	r, _ := roots.LoadOrStore(t, &root{shape: s, small: smallLen(s)})
	return r.(*root)
}

// smallLen returns the length up to which any payload decoded into s
// costs less than its bound, or 0 if none is known to.
func smallLen(s *shape) int {
	c := charges{seen: make(map[slot]bool)}
	c.visit(s, 0, 0)
	n := 0
	if !c.unbounded {
		// Each byte costs at most c.max (+1 for a method's raw bytes);
		// the bound for n bytes is Growth×n + Slack.
		per := max(c.max+1, dataCharge)
		if per <= Growth {
			n = 1 << 30
		} else {
			n = int(Slack / (per - Growth))
		}
	}
	return n
}

// slot is a shape decoded into a container slot that charges share to
// the value's type byte.
type slot struct {
	s     *shape
	share int64
}

type charges struct {
	seen      map[slot]bool
	max       int64 // the largest charge to one type byte seen so far
	unbounded bool  // a pointer type that points to itself
}

// Fixed costs of a value decoded into an interface: the largest is an
// empty map[string]any with its first group, a map entry's slots go to
// its key, a []any element's slot to the element.
var (
	anyOwn, _    = mapCost(1, boxString, sizeIface)
	anyKeyShare  = int64((boxString + sizeIface + 1) * 16 / 7)
	anyElemShare = int64(sizeIface * 5 / 4)
)

func (c *charges) visit(s *shape, share int64, depth int) {
	k := slot{s, share}
	if c.seen[k] || c.unbounded {
		return
	}
	c.seen[k] = true
	if depth > MaxDepth {
		c.unbounded = true
		return
	}
	// Any value may come in an encoding its type does not expect; the
	// walker then counts it as decoded into an interface.
	own := max(anyOwn, extCost+16)
	switch s.kind {
	case kindText, kindCustom:
		own = max(own, methodPad+16)
	case kindPointer:
		// The target is charged to the same type byte as the pointer.
		c.visit(s.elem, share+objSize(s.elem.size)+8, depth+1)
	case kindSlice:
		c.visit(s.elem, objSize(s.elem.size)*5/4+8, depth+1)
	case kindArray:
		c.visit(s.elem, 0, depth+1)
	case kindMap:
		cost, _ := mapCost(1, s.key.size, s.elem.size)
		own = max(own, cost)
		c.visit(s.key, (s.key.size+s.elem.size+1)*16/7+1, depth+1)
		c.visit(s.elem, 0, depth+1)
	case kindStruct:
		for _, f := range s.fields {
			c.visit(f.shape, f.alloc, depth+1)
		}
	}
	c.max = max(c.max, share+own)
	if s != anyShape {
		c.visit(anyShape, 0, depth+1)
		return
	}
	c.visit(anyShape, anyElemShare, depth+1)
	c.visit(stringShape, anyKeyShare, depth+1)
}
