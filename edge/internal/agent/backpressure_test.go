package agent

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// TestFullQueueStopsReadingTheSocket: MQTT 3.1.1 has no receive maximum,
// and the test broker's in-flight window is unlimited, so the broker
// pushes a subscriber every queued message as fast as TCP lets it. With
// the sink blocked (a stalled disk), the subscriber's queue fills and
// sm-edge must stop reading from the socket, leaving the backlog in the
// broker, rather than buffer it: ~48 MB published must not reach the heap.
// When the sink recovers, everything arrives.
func TestFullQueueStopsReadingTheSocket(t *testing.T) {
	mq := testenv.StartMosquitto(t, "")
	cfg, profiles := testConfig(t, "  url: "+mq.URL+"\n  client_id: backpressure\n  workers: 1\n  queue: 64\n  max_batch: 16", sessionSubs)
	sink := &recordingSink{block: make(chan struct{})}
	r := startAgent(t, cfg, profiles, sink)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const n, size = 3000, 16 << 10
	pad := strings.Repeat("x", size)
	pub := publisher(t, mq.URL)
	toks := make(chan mqtt.Token, 500)
	go func() {
		defer close(toks)
		for i := range n {
			toks <- pub.Publish("s/pump/vib", 1, false, fmt.Appendf(nil, `{"v": %d, "ts": %d, "pad": %q}`, i%20, ts0+int64(i), pad))
		}
	}()
	for tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	// The broker has every message; give the subscriber time to take what
	// it would take (it is not told to stop: only its queue is full).
	waitFor(t, 10*time.Second, "the subscriber's queue to fill", func() bool { return r.a.sub.Status().Queued >= 64 })
	time.Sleep(time.Second)
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	received := r.a.sub.Status().Received
	grew := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("with the sink blocked: %d of %d messages taken from the broker, heap +%d KiB", received, n, grew>>10)
	if received > 64+16+8 {
		t.Errorf("took %d messages while the queue holds 64 and the worker 16", received)
	}
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MiB while the sink was blocked (%d MiB published): the subscriber keeps reading the socket", grew>>20, n*size>>20)
	}
	close(sink.block)
	waitFor(t, 60*time.Second, "every reading after the sink recovered", func() bool { return distinctTimes(sink) >= n })
	r.stop(t)
}
