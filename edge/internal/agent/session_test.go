package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

const sessionSubs = `
  - topic: s/{asset}/{sensor}
    json: {value: v, timestamp: ts}
    profile: generic_4_20ma`

// TestQoS1RedeliveryAfterRestart: readings published at QoS 1 while the
// agent is stopped arrive when it restarts with the same client id.
func TestQoS1RedeliveryAfterRestart(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, "")
	cfg, profiles := testConfig(t, "  url: "+mq.URL+"\n  client_id: restart-test", sessionSubs)
	sink1 := &recordingSink{}
	r1 := startAgent(t, cfg, profiles, sink1) // creates the persistent session
	r1.stop(t)

	pub := publisher(t, mq.URL)
	const n = 500
	for i := range n {
		publish(t, pub, 1, fmt.Sprintf("s/a%d/x", i%10), fmt.Appendf(nil, `{"v": %d, "ts": %d}`, i, ts0+int64(i)))
	}
	sink2 := &recordingSink{}
	r2 := startAgent(t, cfg, profiles, sink2)
	waitFor(t, 20*time.Second, "readings published while away", func() bool { return sink2.count() >= n })
	r2.stop(t)
	seen := map[int64]bool{}
	for _, r := range sink2.readings() {
		seen[r.Time] = true
	}
	if len(seen) != n || sink1.count() != 0 {
		t.Errorf("got %d distinct readings after restart (want %d), %d before", len(seen), n, sink1.count())
	}
}

// TestUnwrittenMessagesAreRedelivered: the agent acknowledges a message
// only after the sink accepted its readings. A sink that never accepts
// (here: blocks until shutdown) leaves the messages unacknowledged, and
// the next agent on the same session receives them again. Nothing the
// sink did accept is lost across the restart.
func TestUnwrittenMessagesAreRedelivered(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, "")
	cfg, profiles := testConfig(t, "  url: "+mq.URL+"\n  client_id: ack-test\n  workers: 2", sessionSubs)
	blocked := &recordingSink{block: make(chan struct{})} // never released
	r1 := startAgent(t, cfg, profiles, blocked)
	pub := publisher(t, mq.URL)
	const n = 50
	for i := range n {
		publish(t, pub, 1, "s/a/x", fmt.Appendf(nil, `{"v": %d, "ts": %d}`, i, ts0+int64(i)))
	}
	waitFor(t, 10*time.Second, "messages received", func() bool { return r1.a.sub.Status().Received >= 2 })
	r1.stop(t) // drain times out after 3s: the writes are abandoned, nothing acked
	if blocked.count() != 0 {
		t.Fatalf("blocked sink stored %d", blocked.count())
	}
	sink2 := &recordingSink{}
	r2 := startAgent(t, cfg, profiles, sink2)
	waitFor(t, 20*time.Second, "redelivered readings", func() bool { return distinctTimes(sink2) >= n })
	r2.stop(t)
}

// TestSinkErrorsAreRetried: a failing sink is retried (the message stays
// unacknowledged meanwhile) until it accepts; nothing is dropped.
func TestSinkErrorsAreRetried(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, "")
	cfg, profiles := testConfig(t, "  url: "+mq.URL, sessionSubs)
	sink := &recordingSink{fail: func(call int) error {
		if call <= 3 {
			return errors.New("disk full")
		}
		return nil
	}}
	r := startAgent(t, cfg, profiles, sink)
	pub := publisher(t, mq.URL)
	for i := range 20 {
		publish(t, pub, 1, "s/a/x", fmt.Appendf(nil, `{"v": %d, "ts": %d}`, i, ts0+int64(i)))
	}
	waitFor(t, 20*time.Second, "all readings after retries", func() bool { return distinctTimes(sink) >= 20 })
	st := r.a.Status()
	if st.Sink.Failures != 3 || st.Sink.LastError != "disk full" {
		t.Errorf("sink status %+v", st.Sink)
	}
	r.stop(t)
}

func distinctTimes(s *recordingSink) int {
	seen := map[int64]bool{}
	for _, r := range s.readings() {
		seen[r.Time] = true
	}
	return len(seen)
}

// TestReconnectAfterBrokerRestart: the agent reconnects with backoff after
// the broker restarts and keeps receiving; the broker's persisted session
// delivers what was published to it while the agent was disconnected.
func TestReconnectAfterBrokerRestart(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, "")
	cfg, profiles := testConfig(t, "  url: "+mq.URL+"\n  client_id: reconnect-test", sessionSubs)
	sink := &recordingSink{}
	r := startAgent(t, cfg, profiles, sink)
	pub := publisher(t, mq.URL)
	publish(t, pub, 1, "s/a/x", []byte(`{"v": 1, "ts": 1764151200000}`))
	waitFor(t, 10*time.Second, "first reading", func() bool { return sink.count() == 1 })

	mq.Stop()
	waitFor(t, 10*time.Second, "agent notices the broker is gone", func() bool { return !r.a.sub.Connected() })
	mq.Start()
	waitFor(t, 20*time.Second, "agent reconnected", r.a.sub.Connected)
	pub2 := publisher(t, mq.URL)
	for i := range 10 {
		publish(t, pub2, 1, "s/a/x", fmt.Appendf(nil, `{"v": 2, "ts": %d}`, ts0+1000+int64(i)))
	}
	waitFor(t, 20*time.Second, "readings after reconnect", func() bool { return distinctTimes(sink) >= 11 })
	st := r.a.Status()
	if st.Broker.Reconnects == 0 || st.Broker.State != "connected" {
		t.Errorf("broker status %+v", st.Broker)
	}
	r.stop(t)
}

// slowSink accepts readings after a delay, like a durable queue waiting
// for fsync.
type slowSink struct {
	recordingSink
	delay time.Duration
}

func (s *slowSink) Write(ctx context.Context, rs []wire.Reading) error {
	time.Sleep(s.delay)
	return s.recordingSink.Write(ctx, rs)
}

// TestGracefulShutdownDrains: on shutdown the agent stops taking messages,
// finishes writing and acknowledging what it received, and only then
// disconnects. Every published reading ends up written exactly once
// across the two sessions: the first agent's drained messages are not
// redelivered, and the messages it had not received are.
func TestGracefulShutdownDrains(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, "")
	cfg, profiles := testConfig(t, "  url: "+mq.URL+"\n  client_id: drain-test\n  max_batch: 5", sessionSubs)
	sink1 := &slowSink{delay: 50 * time.Millisecond}
	r1 := startAgent(t, cfg, profiles, sink1)
	pub := publisher(t, mq.URL)
	const n = 200
	for i := range n {
		publish(t, pub, 1, "s/a/x", fmt.Appendf(nil, `{"v": %d, "ts": %d}`, i, ts0+int64(i)))
	}
	waitFor(t, 10*time.Second, "first writes", func() bool { return sink1.count() > 0 })
	r1.stop(t)
	received := r1.a.sub.Status().Received
	if uint64(sink1.count()) != received {
		t.Errorf("first agent received %d messages but wrote %d readings: shutdown did not drain", received, sink1.count())
	}
	sink2 := &recordingSink{}
	r2 := startAgent(t, cfg, profiles, sink2)
	waitFor(t, 20*time.Second, "the rest", func() bool { return sink1.count()+sink2.count() >= n })
	time.Sleep(300 * time.Millisecond) // let any duplicate arrive
	r2.stop(t)
	seen := map[int64]int{}
	for _, r := range append(sink1.readings(), sink2.readings()...) {
		seen[r.Time]++
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if len(seen) != n || dups != 0 {
		t.Errorf("%d distinct readings (want %d), %d duplicates (want 0); first agent wrote %d", len(seen), n, dups, sink1.count())
	}
}
