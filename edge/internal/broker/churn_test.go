package broker

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// A persistent subscriber that keeps resuming its session on new
// connections while a publisher streams QoS 1 messages receives every
// acknowledged message. Each resume races the routing of the messages
// being published at that moment (see guardHook.OnQosPublish).
func TestSubscriberResumingDuringPublishGetsEverything(t *testing.T) {
	t.Parallel()
	b := start(t, Config{})
	const n = 5000
	cnt := &counter{seen: map[string]int{}}
	sub := connect(t, b.URL(), "sub-churn", false, cnt.handle)
	subscribe(t, sub, "plant/#")

	pub := connect(t, b.URL(), "pub-churn-"+testenv.RandomID(4), true, nil)
	defer pub.Disconnect(100)
	window := make(chan paho.Token, 500)
	errc := make(chan error, 1)
	go func() {
		var first error
		for tok := range window {
			if !tok.WaitTimeout(60*time.Second) && first == nil {
				first = fmt.Errorf("no PUBACK within 60 s")
			}
			if err := tok.Error(); err != nil && first == nil {
				first = err
			}
		}
		errc <- first
	}()
	published := make(chan struct{})
	go func() {
		defer close(published)
		defer close(window)
		for i := 0; i < n; i++ {
			window <- pub.Publish("plant/a/b/pump5/vib_y", 1, false, fmt.Sprintf(`{"v":%d,"ts":%d}`, i, i))
		}
	}()
	resumes := 0
	for done := false; !done; {
		select {
		case <-published:
			done = true
		default:
		}
		time.Sleep(20 * time.Millisecond) // pacing: resume a few times per run
		sub.Disconnect(0)
		sub = connect(t, b.URL(), "sub-churn", false, cnt.handle)
		resumes++
	}
	if err := <-errc; err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer sub.Disconnect(100)
	waitFor(60*time.Second, func() bool { return cnt.distinct() >= n })
	if got := cnt.distinct(); got != n {
		t.Errorf("subscriber got %d distinct messages over %d resumes, want %d; missing %v; stats %+v", got, resumes, n, cnt.missing(n), b.Stats())
	}
	if s := b.Stats(); s.Dropped != 0 || s.Discarded != 0 {
		t.Errorf("broker dropped %d, discarded %d messages, want 0", s.Dropped, s.Discarded)
	}
	t.Logf("%d resumes, inflight %d, stats %+v", resumes, inflight(b), b.Stats())
}
