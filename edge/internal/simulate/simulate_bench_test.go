package simulate

import (
	"context"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

func BenchmarkAppendPayload(b *testing.B) {
	ts := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendPayload(buf[:0], 12.3456+float64(i%100), ts, true)
	}
}

// BenchmarkPublish measures the simulator's sustained publish rate (one
// op = one reading: generate, fault-inject, encode, publish, await the
// acknowledgement through the pipelined window) against a private
// no-drop Mosquitto, for QoS 1 pipelined, QoS 1 waiting per message and
// QoS 0.
func BenchmarkPublish(b *testing.B) {
	for _, bc := range []struct {
		name   string
		qos    byte
		window int
	}{
		{"qos1-pipelined", 1, 1000},
		{"qos1-wait", 1, 1},
		{"qos0", 0, 1000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := testenv.StartMosquitto(b, "")
			// 10 assets = 70 sensors; enough samples for b.N readings.
			samples := b.N/70 + 1
			sim, err := New(Config{Broker: m.URL, Topic: "bench/{site}/{line}/{asset}/{sensor}", Assets: 10, Rate: 1000,
				Duration: time.Duration(samples) * time.Millisecond, QoS: bc.qos, Window: bc.window, Fast: true, Faults: FaultsNone, Seed: 1})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			sum, err := sim.Run(context.Background(), nil)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if sum.Acked != sum.Published {
				b.Fatalf("acked %d of %d", sum.Acked, sum.Published)
			}
			b.ReportMetric(float64(sum.Published)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
