package detect

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/shared/wire"
)

type discard struct{}

func (discard) Write(context.Context, []wire.Reading) error     { return nil }
func (discard) WriteEvents(context.Context, []wire.Event) error { return nil }

// BenchmarkStageWrite is the per-reading cost of the live stage with the
// default ensemble, for batches of 100 readings over 1000 sensors.
func BenchmarkStageWrite(b *testing.B) {
	set, _ := Builtin(models.NameEnsemble)
	st, _ := New(discard{}, nil, set, DefaultEventConfig(), nil)
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("site1/line1/pump%d/vib", i)
	}
	batch := make([]wire.Reading, 100)
	write := func(n int) {
		for i := range batch {
			k := n*len(batch) + i
			batch[i] = wire.Reading{Sensor: names[k%len(names)], Time: int64(k), Value: float64(k%17) * 0.1}
		}
		_ = st.Write(context.Background(), batch)
	}
	for n := 0; n < 300; n++ { // create every sensor's state, past warm-up
		write(n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		write(n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/reading")
}

// BenchmarkScoreCSV measures `sm-edge score` throughput (rows/s) on a
// 4-channel pump file with the default ensemble.
func BenchmarkScoreCSV(b *testing.B) {
	in, _ := pumpCSV(b, 1, 20000, nil)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ScoreCSV(context.Background(), strings.NewReader(in), io.Discard, ReplayOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(20000*b.N)/b.Elapsed().Seconds(), "rows/s")
}
