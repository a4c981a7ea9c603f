package mapping

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSnapshotSensorsBounded: a bounded snapshot counts every sensor and
// lists the ones silent the longest, oldest first (ties by id), the same
// as sorting the full list; an unbounded one lists all by id.
func TestSnapshotSensorsBounded(t *testing.T) {
	m := newTestMapper(t, nil, nil, jsonSub)
	const n = 300
	base := int64(1764151200000) // ms
	rng := rand.New(rand.NewPCG(1, 2))
	for i, p := range rng.Perm(n) {
		// Pairs of sensors share a timestamp, to exercise the id tiebreak.
		ts := base + int64(p/2)*1000
		m.Map(nil, fmt.Sprintf("plant/s1/l1/a%03d/temp", i), fmt.Appendf(nil, `{"v": 1, "ts": %d}`, ts), recv)
	}

	all := m.Snapshot(0, 0)
	if all.SensorsSeen != n || len(all.Sensors) != n {
		t.Fatalf("all: seen %d, listed %d; want %d", all.SensorsSeen, len(all.Sensors), n)
	}
	if !slices.IsSortedFunc(all.Sensors, func(a, b SensorStat) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("all: not sorted by id")
	}
	byAge := slices.Clone(all.Sensors)
	slices.SortFunc(byAge, func(a, b SensorStat) int {
		if c := a.Last.Compare(b.Last); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for _, limit := range []int{1, 2, 3, 50, n - 1, n, n + 10} {
		s := m.Snapshot(0, limit)
		want := byAge[:min(limit, n)]
		if s.SensorsSeen != n || !slices.Equal(s.Sensors, want) {
			t.Errorf("limit %d: seen %d, listed %d; want the %d silent the longest", limit, s.SensorsSeen, len(s.Sensors), len(want))
		}
	}
	if got := m.Snapshot(0, 1).Sensors[0]; !got.Last.Equal(time.UnixMilli(base).UTC()) {
		t.Errorf("silent the longest = %+v; want last %v", got, time.UnixMilli(base).UTC())
	}
}

// BenchmarkSnapshot measures the /status snapshot at 40,000 sensors: all
// (sorted by id) against the bounded default of 50.
func BenchmarkSnapshot(b *testing.B) {
	m := newTestMapper(b, nil, nil, jsonSub)
	base := int64(1764151200000)
	for i := range 40000 {
		m.Map(nil, fmt.Sprintf("plant/s%d/l%d/a%d/temp", i%7, i%13, i), fmt.Appendf(nil, `{"v": 1, "ts": %d}`, base+int64(i*7919%40000)), recv)
	}
	for _, bc := range []struct {
		name  string
		limit int
	}{{"all", 0}, {"limit50", 50}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s := m.Snapshot(20, bc.limit); s.SensorsSeen != 40000 {
					b.Fatalf("seen %d", s.SensorsSeen)
				}
			}
		})
	}
}
