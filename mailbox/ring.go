package mailbox

// Ring is a FIFO queue of T in a ring buffer whose size is a power of two.
// It grows only when full, so it never holds more than twice the most
// values it had at once, and it never shrinks: a user that wants the
// memory back after a burst replaces it with a zero Ring. Its zero value
// is an empty ring. It is not safe for concurrent use: the owner guards
// it, typically with the lock it already holds to decide who runs next.
//
// With Slots in front of it to bound how many values may be queued, a
// Ring needs no capacity of its own.
type Ring[T any] struct {
	buf  []T
	head int // index of the oldest value
	n    int // values queued
}

// Len returns how many values are queued.
func (r *Ring[T]) Len() int { return r.n }

// Cap returns how many values the ring holds before it grows.
func (r *Ring[T]) Cap() int { return len(r.buf) }

// Push appends v.
func (r *Ring[T]) Push(v T) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

func (r *Ring[T]) grow() {
	buf := make([]T, max(4, 2*len(r.buf)))
	// The live values are buf[head:] followed by buf[:head]; lay them out
	// from index 0.
	k := copy(buf, r.buf[r.head:])
	copy(buf[k:], r.buf[:r.head])
	r.buf, r.head = buf, 0
}

// Pop removes and returns the oldest value; it reports false if the ring
// is empty.
func (r *Ring[T]) Pop() (T, bool) {
	var zero T
	if r.n == 0 {
		return zero, false
	}
	v := r.buf[r.head]
	r.buf[r.head] = zero // let what v points to be collected
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return v, true
}

// Drain appends every queued value to dst, oldest first, empties the ring
// and returns dst.
func (r *Ring[T]) Drain(dst []T) []T {
	for {
		v, ok := r.Pop()
		if !ok {
			return dst
		}
		dst = append(dst, v)
	}
}
