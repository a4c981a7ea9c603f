package models

import (
	"math"
	"testing"
)

// checkEntryOrder checks, for two offsets, that their packed entries sort
// as the offsets do and decode within the stated precision.
func checkEntryOrder(t *testing.T, a, b float32) {
	t.Helper()
	if a != a || b != b || math.IsInf(float64(a), 0) || math.IsInf(float64(b), 0) {
		return // offsets are finite (offset32 clamps them)
	}
	for _, x := range []float32{a, b} {
		for _, wide := range []bool{false, true} {
			var got float64
			if wide {
				got = entryOffset(entryOf[uint64](x, 0xFFFF))
			} else {
				got = entryOffset(entryOf[uint32](x, 0xFF))
			}
			tol := 0.0
			if !wide {
				// Half of a 15-bit mantissa step; subnormals (below
				// 1.2e-38, far under scaleFloor) keep an absolute step.
				tol = max(math.Abs(float64(x))*0x1p-16, 0x1p-142)
			}
			if math.IsInf(got, 0) || math.IsNaN(got) || math.Abs(got-float64(x)) > tol {
				t.Fatalf("offset %v (wide %v) decodes to %v, beyond ±%g", x, wide, got, tol)
			}
		}
	}
	if a > b {
		a, b = b, a
	}
	ka, kb := entryOf[uint32](a, 0), entryOf[uint32](b, 0)
	if ka > kb {
		t.Fatalf("entries out of order: %v → %#x, %v → %#x", a, ka, b, kb)
	}
	if wa, wb := entryOf[uint64](a, 0), entryOf[uint64](b, 0); a < b && wa >= wb {
		t.Fatalf("wide entries out of order: %v → %#x, %v → %#x", a, wa, b, wb)
	}
}

func TestEntryOrderAndPrecision(t *testing.T) {
	max32 := float32(math.MaxFloat32)
	tiny := math.Float32frombits(1) // smallest subnormal
	tests := []struct{ a, b float32 }{
		{0, float32(math.Copysign(0, -1))},
		{-1, 1},
		{1, 1.0000001},
		{-max32, max32},
		{-tiny, tiny},
		{0.3, 0.30001},
		{-101325.12, -101325.11},
		{max32, max32 * 0.99999},
		{1e-30, 2e-30},
	}
	for _, tc := range tests {
		checkEntryOrder(t, tc.a, tc.b)
	}
}

func FuzzEntryOrder(f *testing.F) {
	f.Add(float32(-1), float32(1))
	f.Add(float32(math.MaxFloat32), float32(-math.MaxFloat32))
	f.Add(float32(1e-40), float32(0))
	f.Fuzz(checkEntryOrder)
}
