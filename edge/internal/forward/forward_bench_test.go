package forward

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// BenchmarkForwardDrain drains a filled queue through the forwarder to the
// recording receiver over HTTP (encode, zstd, POST, decode, dedup, answer,
// Ack). One op is one reading. The receiver stands in for a collector that
// costs nothing, so this is the edge's ceiling.
func BenchmarkForwardDrain(b *testing.B) {
	for _, size := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			rcv := newReceiver(b, testEdge, testToken)
			cfg := buffer.Default()
			cfg.Check = buffer.CheckQuick
			q, err := buffer.Open(b.Context(), filepath.Join(b.TempDir(), buffer.FileName), cfg, buffer.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			chunk := make([]wire.Reading, 5000)
			base := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixNano()
			n := 0
			for n < b.N {
				for i := range chunk {
					chunk[i] = wire.Reading{
						Sensor: fmt.Sprintf("plant-north/hall-03/line-%02d/press-%03d/pressure", n%16, n%200),
						Time:   base + int64(n), Value: float64(n%1000) * 0.25, Model: "iforest@3", Score: 0.1,
					}
					n++
				}
				if err := q.Write(b.Context(), chunk); err != nil {
					b.Fatal(err)
				}
			}
			fc := testCfg(rcv.srv.URL)
			fc.BatchSize = size
			f, err := New(fc, q, Options{EdgeID: testEdge, Token: testToken})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			ctx, cancel := context.WithCancel(b.Context())
			done := make(chan error)
			go func() { done <- f.Run(ctx) }()
			for rcv.count() < n {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			cancel()
			<-done
			b.StopTimer()
			b.ReportMetric(float64(n)/elapsed.Seconds(), "readings/s")
			var batches int
			rcv.get(func(r *receiver) { batches = r.accepted })
			b.ReportMetric(float64(n)/float64(max(batches, 1)), "readings/batch")
		})
	}
}
