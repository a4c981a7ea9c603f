package wire

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// realisticBatch builds a batch like one an edge forwards: 50 sensors named
// site/line/asset/signal, sampled at about 1 Hz with ±30 ms jitter and sent
// in arrival order; values with the precision of real transmitters; about
// half the sensors scored by one of two models; a few uncertain samples,
// flags, missed samples, three events and two gap records. It is
// deterministic for a given seed.
func realisticBatch(seed uint64, n int) *Batch {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	type sensor struct {
		id    string
		base  float64
		noise float64
		step  float64 // transmitter resolution
		model string
	}
	signals := []struct {
		name              string
		base, noise, step float64
	}{
		{"vib_x", 2.3, 0.4, 0.001},      // mm/s RMS
		{"vib_y", 1.9, 0.35, 0.001},     // mm/s RMS
		{"temp", 61.5, 0.8, 0.01},       // °C bearing temperature
		{"current", 42.0, 1.5, 0.01},    // A
		{"pressure", 4.25, 0.05, 0.001}, // bar
	}
	var sensors []sensor
	for line := 1; line <= 2; line++ {
		for asset := 1; asset <= 5; asset++ {
			kind := "pump"
			if asset > 3 {
				kind = "motor"
			}
			for si, sg := range signals {
				s := sensor{
					id:    fmt.Sprintf("site1/line%d/%s%d/%s", line, kind, asset, sg.name),
					base:  sg.base * (0.8 + 0.4*rng.Float64()),
					noise: sg.noise,
					step:  sg.step,
				}
				switch {
				case si < 2:
					s.model = "iforest@3"
				case si == 2:
					s.model = "zscore@1"
				}
				sensors = append(sensors, s)
			}
		}
	}
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).UnixNano()
	b := &Batch{
		EdgeID:  "edge-site1-a",
		BatchID: "01JDG7Q4N8K2M5P9R3T6V8X0Z1",
		SentAt:  start + int64(25*time.Second),
	}
	seq := uint64(1_204_331)
	b.FirstSeq = seq
	for sec := 0; len(b.Readings) < n; sec++ {
		for _, s := range sensors {
			if len(b.Readings) >= n {
				break
			}
			if rng.IntN(100) == 0 { // a missed sample now and then
				continue
			}
			jitter := int64(rng.NormFloat64() * float64(10*time.Millisecond))
			ts := start + int64(sec)*int64(time.Second) + jitter
			ts -= ts % int64(time.Microsecond) // sources give µs at best
			v := s.base + s.noise*rng.NormFloat64()
			v = math.Round(v/s.step) * s.step
			r := Reading{Sensor: s.id, Time: ts, Value: v, Seq: seq}
			seq++
			if rng.IntN(200) == 0 {
				r.Quality = QualityUncertain
			}
			if s.model != "" {
				r.Model = s.model
				r.Score = float32(math.Abs(rng.NormFloat64()) * 0.15)
				if r.Score >= 0.5 {
					r.Flags |= FlagAnomaly
				}
			}
			b.Readings = append(b.Readings, r)
		}
	}
	// Arrival order: by timestamp (jitter reorders within a second).
	sort.SliceStable(b.Readings, func(i, j int) bool { return b.Readings[i].Time < b.Readings[j].Time })
	for i := range b.Readings { // the edge numbers records as they are queued
		b.Readings[i].Seq = b.FirstSeq + uint64(i)
	}
	seq = b.FirstSeq + uint64(len(b.Readings))
	b.Events = []Event{
		{Sensor: sensors[0].id, Asset: "site1/line1/pump1", Kind: EventAnomaly, State: EventRaised,
			Severity: SeverityMajor, Rule: "iforest", Time: start + 12e9, WindowStart: start + 2e9,
			WindowEnd: start + 12e9, Value: 4.812, Score: 0.91, Threshold: 0.8, Model: "iforest@3", Seq: seq},
		{Sensor: sensors[7].id, Asset: "site1/line1/pump2", Kind: EventLimit, State: EventRaised,
			Severity: SeverityCritical, Rule: "HH", Time: start + 14e9, WindowStart: start + 9e9,
			WindowEnd: start + 14e9, Value: 88.41, Threshold: 85, Seq: seq + 1},
		{Sensor: sensors[7].id, Asset: "site1/line1/pump2", Kind: EventLimit, State: EventCleared,
			Severity: SeverityCritical, Rule: "HH", Time: start + 19e9, WindowStart: start + 14e9,
			WindowEnd: start + 19e9, Value: 83.02, Threshold: 85, Seq: seq + 2},
	}
	b.Gaps = []Gap{
		{Sensor: sensors[3].id, From: start + 3e9, To: start + 6e9, Count: 4, Reason: GapBrokerLoss, Seq: seq + 3},
		{From: start - 3600e9, To: start - 1800e9, Count: 0, Reason: GapBudget, Seq: seq + 4},
	}
	b.LastSeq = seq + 4
	return b
}

// batchDiff compares batches with floats compared bit for bit, so NaN
// payloads and -0 must survive exactly, and nil equal to empty.
func batchDiff(want, got *Batch) string {
	return cmp.Diff(want, got,
		cmpopts.EquateEmpty(),
		cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }),
		cmp.Comparer(func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }),
	)
}
