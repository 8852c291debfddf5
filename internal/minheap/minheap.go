// Package minheap is a binary min-heap of values of any type, ordered by
// a function: container/heap without its interface boxing (a Push of an
// int64 through heap.Interface allocates) and without the five methods
// every heap type repeats.
package minheap

// Heap is a min-heap ordered by Less. Its zero value is not usable: set
// Less (or use New). Items is the heap's backing slice, in heap order:
// Items[0] is the minimum; change it only through the methods.
type Heap[T any] struct {
	Items []T
	Less  func(a, b T) bool
}

// New returns an empty heap ordered by less.
func New[T any](less func(a, b T) bool) Heap[T] { return Heap[T]{Less: less} }

// Len is the number of items.
func (h *Heap[T]) Len() int { return len(h.Items) }

// Min returns the smallest item; the heap must not be empty.
func (h *Heap[T]) Min() T { return h.Items[0] }

// Push adds x.
func (h *Heap[T]) Push(x T) {
	h.Items = append(h.Items, x)
	h.up(len(h.Items) - 1)
}

// Pop removes and returns the smallest item; the heap must not be empty.
func (h *Heap[T]) Pop() T {
	n := len(h.Items) - 1
	h.Items[0], h.Items[n] = h.Items[n], h.Items[0]
	h.down(0, n)
	x := h.Items[n]
	var zero T
	h.Items[n] = zero // no reference kept by the backing array
	h.Items = h.Items[:n]
	return x
}

func (h *Heap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2 // parent
		if !h.Less(h.Items[j], h.Items[i]) {
			break
		}
		h.Items[i], h.Items[j] = h.Items[j], h.Items[i]
		j = i
	}
}

func (h *Heap[T]) down(i, n int) {
	for {
		j := 2*i + 1
		if j >= n || j < 0 {
			return
		}
		if r := j + 1; r < n && h.Less(h.Items[r], h.Items[j]) {
			j = r
		}
		if !h.Less(h.Items[j], h.Items[i]) {
			return
		}
		h.Items[i], h.Items[j] = h.Items[j], h.Items[i]
		i = j
	}
}
