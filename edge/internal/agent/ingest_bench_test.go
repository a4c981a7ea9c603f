package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// countingSink accepts readings without storing them, so the benchmark
// measures MQTT receive + decode + map + acknowledge, not a buffer.
type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Write(_ context.Context, rs []wire.Reading) error {
	s.n.Add(int64(len(rs)))
	return nil
}
func (s *countingSink) WriteEvents(context.Context, []wire.Event) error { return nil }

const benchMessages = 50000

// publishBacklog publishes n QoS 1 JSON readings on 100 topics, pipelined.
func publishBacklog(b *testing.B, url, prefix string, n int) {
	pub := publisher(b, url)
	toks := make([]mqtt.Token, 0, n)
	for i := range n {
		topic := fmt.Sprintf("%s/site1/line1/asset%d/sensor%d", prefix, i%10, i%100/10)
		payload := fmt.Appendf(nil, `{"v": %d.25, "ts": %d, "q": "good"}`, i, ts0+int64(i))
		toks = append(toks, pub.Publish(topic, 1, false, payload))
	}
	for _, t := range toks {
		if !t.WaitTimeout(60*time.Second) || t.Error() != nil {
			b.Fatalf("publish: %v", t.Error())
		}
	}
}

// createSession connects once with a persistent session and subscribes, so
// that the broker queues what is published while the client is away.
func createSession(b *testing.B, url, clientID, filter string) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetCleanSession(false))
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("connect: %v", t.Error())
	}
	if t := c.Subscribe(filter, 1, nil); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("subscribe: %v", t.Error())
	}
	c.Disconnect(100)
}

// bareDrain measures a bare paho QoS 1 subscriber (auto-ack, a counter in
// the handler) draining n queued messages: messages per second.
func bareDrain(b *testing.B, url, clientID, filter string, n int) float64 {
	var got atomic.Int64
	done := make(chan struct{})
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetCleanSession(false).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			if got.Add(1) == int64(n) {
				close(done)
			}
		})
	c := mqtt.NewClient(opts)
	start := time.Now()
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("connect: %v", t.Error())
	}
	if t := c.Subscribe(filter, 1, nil); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("subscribe: %v", t.Error())
	}
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		b.Fatalf("bare subscriber got %d of %d", got.Load(), n)
	}
	rate := float64(n) / time.Since(start).Seconds()
	c.Disconnect(250)
	return rate
}

// BenchmarkIngestVsBarePaho compares how fast sm-edge's ingest (receive,
// decode JSON, map topic to sensor and profile, hand to the sink,
// acknowledge after the hand-over) drains a QoS 1 backlog on a real
// Mosquitto with how fast a bare paho subscriber that only counts drains
// the same backlog, in the same run. Each iteration measures both, in
// alternating order (this machine is shared and noisy); the reported ratio
// is the median of the per-iteration ratios. Goal: ratio ≥ 0.9. Run with
// -benchtime=Nx (N ≥ 5). The sub-benchmarks run the broker with an
// unlimited in-flight window (as the zero-loss tests do) and with
// Mosquitto's default of 20 unacknowledged messages per client.
func BenchmarkIngestVsBarePaho(b *testing.B) {
	b.Run("inflight=unlimited", func(b *testing.B) { benchIngest(b, "") })
	b.Run("inflight=20", func(b *testing.B) { benchIngest(b, "max_inflight_messages 20") })
}

func benchIngest(b *testing.B, brokerConf string) {
	mq := testenv.StartMosquitto(b, brokerConf)
	var bareSum, edgeSum float64
	var ratios []float64
	iter := 0
	for b.Loop() {
		iter++
		var bare, edge float64
		if iter%2 == 1 {
			bare = measureBare(b, mq.URL, iter)
			edge = measureEdge(b, mq.URL, iter)
		} else {
			edge = measureEdge(b, mq.URL, iter)
			bare = measureBare(b, mq.URL, iter)
		}
		bareSum += bare
		edgeSum += edge
		ratios = append(ratios, edge/bare)
	}
	sort.Float64s(ratios)
	b.ReportMetric(bareSum/float64(iter), "bare_msgs/s")
	b.ReportMetric(edgeSum/float64(iter), "smedge_readings/s")
	b.ReportMetric(ratios[len(ratios)/2], "median_ratio")
	b.ReportMetric(0, "ns/op")
}

func measureBare(b *testing.B, url string, iter int) float64 {
	prefix := fmt.Sprintf("bare%d", iter)
	createSession(b, url, prefix, prefix+"/#")
	publishBacklog(b, url, prefix, benchMessages)
	return bareDrain(b, url, prefix, prefix+"/#", benchMessages)
}

func measureEdge(b *testing.B, url string, iter int) float64 {
	prefix := fmt.Sprintf("edge%d", iter)
	cfg, profiles := testConfig(b, "  url: "+url+"\n  client_id: "+prefix, fmt.Sprintf(`
  - topic: %s/{site}/{line}/{asset}/{sensor}
    json: {value: v, timestamp: ts, quality: q}
    profile: generic_4_20ma`, prefix))
	cfg.Admin.Listen = "off"
	createSession(b, url, prefix, prefix+"/+/+/+/+")
	publishBacklog(b, url, prefix, benchMessages)
	sink := &countingSink{}
	a, err := New(Options{Config: cfg, Profiles: profiles, Sink: sink, Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(120 * time.Second)
	for sink.n.Load() < benchMessages {
		if time.Now().After(deadline) {
			b.Fatalf("sm-edge got %d of %d", sink.n.Load(), benchMessages)
		}
		time.Sleep(time.Millisecond)
	}
	rate := float64(benchMessages) / time.Since(start).Seconds()
	cancel()
	<-done
	return rate
}
