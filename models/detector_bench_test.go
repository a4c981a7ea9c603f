package models

import (
	"runtime"
	"testing"
)

// BenchmarkUpdate measures the per-reading cost of every univariate
// detector on a realistic signal (must be 0 allocs/op).
func BenchmarkUpdate(b *testing.B) {
	xs := signal(1, 1<<14)
	for _, name := range Builtins() {
		b.Run(name, func(b *testing.B) {
			d, _ := New(name)
			for i := 0; i < 2000; i++ { // past warm-up
				d.Update(int64(i), xs[i])
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d.Update(int64(i), xs[i&(len(xs)-1)])
			}
		})
	}
	b.Run("limits", func(b *testing.B) {
		h, l := 51.0, 49.0
		d := NewLimits(LimitsConfig{H: &h, L: &l, Deadband: 0.2, MinDuration: 3})
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			d.Update(int64(i), xs[i&(len(xs)-1)])
		}
	})
}

// BenchmarkPCARow measures scoring one row of an asset with 4 and 16
// sensors.
func BenchmarkPCARow(b *testing.B) {
	for _, w := range []int{4, 16} {
		b.Run(map[int]string{4: "4-sensors", 16: "16-sensors"}[w], func(b *testing.B) {
			base := correlated(2, 3000)
			rows := make([][]float64, len(base))
			for i, r := range base {
				rows[i] = make([]float64, w)
				for j := range rows[i] {
					rows[i][j] = r[j%3] + float64(j)*0.01*r[(j+1)%3]
				}
			}
			p, err := TrainPCA(rows[:2000], DefaultPCAConfig())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.UpdateRow(0, rows[i%len(rows)])
			}
		})
	}
}

// BenchmarkAssetRow measures the default asset scorer (ensemble per
// sensor + online PCA) per row of 4 sensors.
func BenchmarkAssetRow(b *testing.B) {
	rows := correlated(3, 4000)
	ds := []Detector{}
	for range 3 {
		ds = append(ds, NewEnsemble(DefaultEnsembleConfig()))
	}
	a := NewAsset(ds, NewOnlinePCA(3, 500, DefaultPCAConfig()), DefaultThreshold)
	for i := 0; i < 1000; i++ {
		a.Update(int64(i), rows[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Update(int64(i), rows[i%len(rows)])
	}
}

// BenchmarkEnsembleMemory reports the live heap held by the default
// ensembles of a 20,000-sensor edge after each has scored 200 readings
// (bytes/sensor), measured with runtime.ReadMemStats after a GC.
func BenchmarkEnsembleMemory(b *testing.B) {
	const sensors, readings = 20000, 200
	xs := signal(1, readings)
	b.ReportAllocs()
	for b.Loop() {
		before := liveHeap()
		ds := make([]Detector, sensors)
		for i := range ds {
			ds[i] = NewEnsemble(DefaultEnsembleConfig())
			for j, x := range xs {
				ds[i].Update(int64(j), x)
			}
		}
		after := liveHeap()
		b.ReportMetric(float64(after-before)/sensors, "bytes/sensor")
		runtime.KeepAlive(ds)
	}
}

// liveHeap returns the bytes of live heap objects after a full GC.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
