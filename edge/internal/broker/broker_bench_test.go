package broker

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// BenchmarkQoS1Throughput publishes 200-byte QoS 1 messages (pipelined,
// 1,000 in flight) through one broker to one persistent QoS 1 subscriber
// and reports delivered msg/s: the embedded broker (in memory and with a
// data dir) against the system's Mosquitto binary with its no-drop
// configuration, in the same run.
func BenchmarkQoS1Throughput(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		br := start(b, Config{})
		benchThroughput(b, br.URL())
	})
	b.Run("embedded-data-dir", func(b *testing.B) {
		br := start(b, Config{DataDir: b.TempDir()})
		benchThroughput(b, br.URL())
	})
	b.Run("mosquitto", func(b *testing.B) {
		m := testenv.StartMosquitto(b, "")
		benchThroughput(b, m.URL)
	})
}

func benchThroughput(b *testing.B, url string) {
	var got atomic.Int64
	sub := connect(b, url, "bench-sub-"+testenv.RandomID(4), false, func(paho.Client, paho.Message) { got.Add(1) })
	defer sub.Disconnect(100)
	subscribe(b, sub, "bench/#")
	pub := connect(b, url, "bench-pub-"+testenv.RandomID(4), true, nil)
	defer pub.Disconnect(100)
	payload := []byte(`{"v":12.3456,"ts":1764151200123,"q":"good"}` + strings.Repeat(" ", 200-44))
	window := make(chan paho.Token, 1000)
	done := make(chan struct{})
	go func() {
		for tok := range window {
			tok.Wait()
			if err := tok.Error(); err != nil {
				b.Errorf("publish: %v", err)
			}
		}
		close(done)
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		window <- pub.Publish(fmt.Sprintf("bench/site/line/pump%d/vib_x", i%100), 1, false, payload)
	}
	close(window)
	<-done
	deadline := time.Now().Add(60 * time.Second)
	for got.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	if n := got.Load(); n != int64(b.N) {
		b.Fatalf("subscriber got %d of %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
