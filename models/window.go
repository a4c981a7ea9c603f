package models

import (
	"math"
	"unsafe"
)

// A MAD's window is one sorted slice of packed entries, each a reading's
// offset from the anchor together with its ring slot (arrival order
// modulo Window), so the oldest reading is found by its slot and the
// window is one memmove per insert and delete:
//
//   - uint32 (Window ≤ 256): the offset's sortable float32 key rounded to
//     its top 24 bits (sign, exponent and a 15-bit mantissa: within
//     1.5e-5 of the offset), then an 8-bit slot. 4 bytes a reading.
//   - uint64 (larger windows): the full 32-bit key, then a 16-bit slot.
//
// A key orders like the float it encodes, so the entries sort by offset
// with integer compares; which of several equal offsets carries a slot
// does not matter.
type winEntry interface{ ~uint32 | ~uint64 }

// floatKey maps a float32 to a uint32 that sorts in the same order
// (negative values: all bits flipped; others: the sign bit set).
func floatKey(x float32) uint32 {
	b := math.Float32bits(x)
	m := uint32(int32(b) >> 31) // all ones for a negative value
	return b ^ (m | 1<<31)
}

// keyFloat is the inverse of floatKey.
// Branch-free: the offsets around the median change sign at random, and a
// branch here mispredicted in the MAD's merge walk.
func keyFloat(k uint32) float32 {
	m := uint32(int32(k) >> 31) // all ones for a non-negative value
	return math.Float32frombits(k ^ (^m | 1<<31))
}

// Bounds of a 24-bit key that decodes to a finite float32 (−MaxFloat32
// and +MaxFloat32 rounded inwards).
const (
	minKey24 = 0x00_80_00_00
	maxKey24 = 0xFF_7F_FF_00
)

// wide reports whether E is the 64-bit entry.
func wide[E winEntry]() bool {
	var e E
	return unsafe.Sizeof(e) == 8
}

// entryOf packs offset x with ring slot s.
func entryOf[E winEntry](x float32, s int) E {
	k := floatKey(x)
	if wide[E]() {
		return E(uint64(k)<<16 | uint64(s))
	}
	// Round to the nearest 24-bit key; rounding is monotonic.
	r := uint64(k) + 0x80
	r &^= 0xFF
	r = min(max(r, minKey24), maxKey24)
	return E(r | uint64(s))
}

// entryOffset is the offset an entry stores.
func entryOffset[E winEntry](e E) float64 {
	if wide[E]() {
		return float64(keyFloat(uint32(uint64(e) >> 16)))
	}
	return float64(keyFloat(uint32(e) &^ 0xFF))
}

// entrySlot is the ring slot of an entry.
func entrySlot[E winEntry](e E) int {
	if wide[E]() {
		return int(uint64(e) & 0xFFFF)
	}
	return int(uint32(e) & 0xFF)
}

// winInsert adds offset x at ring slot head to the sorted window a of at
// most window entries, dropping the entry of that slot (the oldest) when
// it is full.
func winInsert[E winEntry](a []E, window, head int, x float32) []E {
	n := len(a)
	if n == window {
		i := 0
		for entrySlot(a[i]) != head {
			i++
		}
		copy(a[i:], a[i+1:])
		n--
		a = a[:n]
	}
	e := entryOf[E](x, head)
	// Lower bound of e's key: slots sort below any larger key.
	k := e - E(entrySlot(e))
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a[m] < k {
			lo = m + 1
		} else {
			hi = m
		}
	}
	a = a[:n+1]
	copy(a[lo+1:], a[lo:])
	a[lo] = e
	return a
}

// winMedian returns the median offset of a (not empty).
func winMedian[E winEntry](a []E) float64 {
	n := len(a)
	m := n / 2
	if n%2 == 1 {
		return entryOffset(a[m])
	}
	return (entryOffset(a[m-1]) + entryOffset(a[m])) / 2
}

// winMAD returns the median absolute deviation of a from med (its
// median): the absolute deviations form two sorted runs walking out from
// the median, and the MAD is the k-th smallest of their merge. When it is
// 0 (a quantised window with more than half the values equal) it returns
// the mean absolute deviation instead, with meanAbs set.
func winMAD[E winEntry](a []E, med float64) (dev float64, meanAbs bool) {
	n := len(a)
	m := n / 2
	l, r := m-1, m
	k := (n + 1) / 2
	// Each side's next deviation is decoded once, when that side moves.
	inf := math.Inf(1)
	dl, dr := inf, inf
	if l >= 0 {
		dl = med - entryOffset(a[l])
	}
	if r < n {
		dr = entryOffset(a[r]) - med
	}
	for i := 0; i < k; i++ {
		if dl <= dr {
			dev = dl
			l--
			dl = inf
			if l >= 0 {
				dl = med - entryOffset(a[l])
			}
		} else {
			dev = dr
			r++
			dr = inf
			if r < n {
				dr = entryOffset(a[r]) - med
			}
		}
	}
	if dev != 0 {
		return dev, false
	}
	sum := 0.0
	for _, e := range a {
		sum += math.Abs(entryOffset(e) - med)
	}
	return sum / float64(n), true
}

// winShift re-stores every offset x of a as x + (from − to), the offsets
// from anchor to of the readings stored from anchor from. Rounding is
// monotonic, so a stays sorted by key (entries of equal keys may change
// order, which does not matter) and the slots stay valid.
func winShift[E winEntry](a []E, from, to float64) {
	for i, e := range a {
		a[i] = entryOf[E](offset32(from+entryOffset(e), to), entrySlot(e))
	}
}
