package placement

import (
	"container/heap"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// The meta leader's leases by deadline: a min-heap, so that finding the
// expired leases costs the expired leases, not all of them. (A scan of
// every lease each ExpiryInterval, holding the meta lock, was the largest
// CPU cost of a mass expiry at 100,000 leases: 28 % of the process, and it
// held up every lease call and the meta group's apply meanwhile.)
//
// A lease is in the heap while its deadline is set on this replica (it
// leads or led) and no revocation of it took it out: TakeExpired pops the
// leases it hands out, AbortRevoke puts them back, a removal drops them.
// Promotion rebuilds the heap from every lease.

// leaseHeap orders leases by deadline; each lease knows its index.
type leaseHeap []*lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].expiry.Before(h[j].expiry) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}

func (h *leaseHeap) Push(x any) {
	l := x.(*lease)
	l.heapIdx = len(*h)
	*h = append(*h, l)
}

func (h *leaseHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.heapIdx = -1
	return l
}

// newLease returns a lease outside the heap.
func newLease(rec *tesserapb.LeaseRecord) *lease { return &lease{rec: rec, heapIdx: -1} }

// scheduleLocked (re)places l in the heap after its deadline changed.
func (m *Meta) scheduleLocked(l *lease) {
	switch {
	case l.expiry.IsZero():
	case l.heapIdx >= 0:
		heap.Fix(&m.mu.expiries, l.heapIdx)
	default:
		heap.Push(&m.mu.expiries, l)
	}
}

// unscheduleLocked takes l out of the heap.
func (m *Meta) unscheduleLocked(l *lease) {
	if l.heapIdx >= 0 {
		heap.Remove(&m.mu.expiries, l.heapIdx)
	}
}

// rescheduleAllLocked rebuilds the heap from every lease with a deadline
// that is not being revoked.
func (m *Meta) rescheduleAllLocked() {
	for _, l := range m.mu.expiries {
		l.heapIdx = -1
	}
	h := make(leaseHeap, 0, len(m.mu.leases))
	for _, l := range m.mu.leases {
		if !l.expiry.IsZero() && !l.revoking {
			l.heapIdx = len(h)
			h = append(h, l)
		}
	}
	heap.Init(&h)
	m.mu.expiries = h
}
