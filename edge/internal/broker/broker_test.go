package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// start runs an embedded broker on a free port until the test ends; hooks
// run before the broker's own.
func start(t testing.TB, cfg Config, hooks ...mqtt.Hook) *Broker {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	}
	b, err := newBroker(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), hooks)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	if err := testenv.WaitTCP(b.Addr(), 5*time.Second); err != nil {
		t.Fatalf("broker did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker run: %v", err)
		}
	})
	return b
}

// counter is a persistent QoS 1 subscriber that counts distinct payloads.
type counter struct {
	mu    sync.Mutex
	seen  map[string]int
	total atomic.Int64
	delay time.Duration
}

func (c *counter) handle(_ paho.Client, m paho.Message) {
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	c.mu.Lock()
	c.seen[string(m.Payload())]++
	c.mu.Unlock()
	c.total.Add(1)
}

func (c *counter) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// missing lists the values v < n (payloads of publish) not seen, at most 20.
func (c *counter) missing(n int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i := 0; i < n && len(out) < 20; i++ {
		if _, ok := c.seen[fmt.Sprintf(`{"v":%d,"ts":%d}`, i, i)]; !ok {
			out = append(out, i)
		}
	}
	return out
}

func connect(t testing.TB, url, id string, clean bool, h paho.MessageHandler) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetOrderMatters(true).SetKeepAlive(60 * time.Second)
	if h != nil {
		o.SetDefaultPublishHandler(h)
	}
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, url, tok.Error())
	}
	return c
}

func subscribe(t testing.TB, c paho.Client, topic string) {
	t.Helper()
	if tok := c.Subscribe(topic, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
}

// publish sends n QoS 1 messages with distinct payloads, pipelined, and
// returns when all are acknowledged.
func publish(t testing.TB, url, topic string, n int) {
	t.Helper()
	c := connect(t, url, "pub-"+testenv.RandomID(6), true, nil)
	defer c.Disconnect(100)
	window := make(chan paho.Token, 500)
	errc := make(chan error, 1)
	go func() {
		var first error
		for tok := range window {
			tok.Wait()
			if err := tok.Error(); err != nil && first == nil {
				first = err
			}
		}
		errc <- first
	}()
	for i := 0; i < n; i++ {
		window <- c.Publish(topic, 1, false, fmt.Sprintf(`{"v":%d,"ts":%d}`, i, i))
	}
	close(window)
	if err := <-errc; err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// waitFor polls cond until it holds or timeout passes; the caller's
// assertions then report what is missing.
func waitFor(timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// A persistent subscriber that is away while 50,000 QoS 1 messages are
// published receives every one of them when it comes back.
func TestDisconnectedPersistentSubscriberGetsEverything(t *testing.T) {
	t.Parallel()
	b := start(t, Config{})
	const n = 50000
	cnt := &counter{seen: map[string]int{}}
	sub := connect(t, b.URL(), "sub-away", false, cnt.handle)
	subscribe(t, sub, "plant/#")
	sub.Disconnect(100)

	publish(t, b.URL(), "plant/a/b/pump1/vib_x", n)

	sub = connect(t, b.URL(), "sub-away", false, cnt.handle)
	defer sub.Disconnect(100)
	// Done when every message arrived and the broker holds none
	// unacknowledged; a lost message keeps the first false until timeout.
	waitFor(60*time.Second, func() bool { return cnt.distinct() >= n && inflight(b) == 0 })
	if got := cnt.distinct(); got != n {
		t.Errorf("subscriber got %d distinct messages, want %d; missing %v; stats %+v", got, n, cnt.missing(n), b.Stats())
	}
	s := b.Stats()
	if s.Dropped != 0 || s.Discarded != 0 {
		t.Errorf("broker dropped %d, discarded %d messages, want 0", s.Dropped, s.Discarded)
	}
	if k := inflight(b); k != 0 {
		t.Errorf("broker counts %d unacknowledged messages after all were acknowledged", k)
	}
}

// A connected subscriber slower than the publisher loses nothing: once it
// holds HighWater unacknowledged messages the publisher is held back.
func TestSlowSubscriberHoldsPublisher(t *testing.T) {
	t.Parallel()
	b := start(t, Config{HighWater: 500})
	const n = 20000
	cnt := &counter{seen: map[string]int{}, delay: 50 * time.Microsecond}
	sub := connect(t, b.URL(), "sub-slow", false, cnt.handle)
	defer sub.Disconnect(100)
	subscribe(t, sub, "plant/#")

	publish(t, b.URL(), "plant/a/b/pump1/flow", n)
	waitFor(60*time.Second, func() bool { return cnt.distinct() >= n })
	s := b.Stats()
	if s.Dropped != 0 {
		t.Errorf("broker dropped %d messages", s.Dropped)
	}
	if s.Held == 0 {
		t.Errorf("publisher was never held: the test did not make the subscriber slow")
	}
	if got := cnt.distinct(); got != n {
		t.Errorf("subscriber got %d distinct messages, want %d", got, n)
	}
}

// routeGate holds the routing of messages on one topic to one client (in
// mochi's publishToClient, after the subscriber's client was looked up)
// until release is closed. It allows everything, like auth.AllowHook.
type routeGate struct {
	mqtt.HookBase
	topic, client string
	held          chan struct{} // closed when a message is held
	release       chan struct{}
	once          sync.Once
}

func (g *routeGate) ID() string           { return "test-route-gate" }
func (g *routeGate) Provides(b byte) bool { return b == mqtt.OnACLCheck }

func (g *routeGate) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !write && topic == g.topic && cl.ID == g.client {
		g.once.Do(func() { close(g.held) })
		<-g.release
	}
	return true
}

// A QoS 1 message is acknowledged to its publisher before mochi routes it.
// If its persistent subscriber resumes its session on a new connection in
// between, mochi v2.7.9 queues the message on the replaced connection,
// where it is lost. The broker moves it to the resumed session.
func TestMessageRoutedWhileSessionResumes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		dataDir bool
	}{{"memory", false}, {"data-dir", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{}
			if tc.dataDir {
				cfg.DataDir = t.TempDir()
			}
			testRoutedWhileSessionResumes(t, cfg)
		})
	}
}

func testRoutedWhileSessionResumes(t *testing.T, cfg Config) {
	gate := &routeGate{topic: "plant/a/b/pump3/temp", client: "sub-resume", held: make(chan struct{}), release: make(chan struct{})}
	b := start(t, cfg, gate)
	var released sync.Once
	release := func() { released.Do(func() { close(gate.release) }) }
	defer release()
	cnt := &counter{seen: map[string]int{}}
	sub := connect(t, b.URL(), "sub-resume", false, cnt.handle)
	subscribe(t, sub, "plant/#")
	sub.Disconnect(100)

	pub := connect(t, b.URL(), "pub-resume", true, nil)
	defer pub.Disconnect(100)
	if tok := pub.Publish(gate.topic, 1, false, "m1"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish not acknowledged: %v", tok.Error())
	}
	select {
	case <-gate.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the message was never routed to the subscriber")
	}
	sub = connect(t, b.URL(), "sub-resume", false, cnt.handle)
	defer sub.Disconnect(100)
	release()

	waitFor(10*time.Second, func() bool { return cnt.distinct() >= 1 && inflight(b) == 0 })
	if got := cnt.distinct(); got != 1 {
		t.Errorf("resumed subscriber got %d messages, want 1 (stats %+v)", got, b.Stats())
	}
	s := b.Stats()
	if s.Adopted != 1 {
		t.Errorf("adopted %d messages, want 1: the test missed the race it is about", s.Adopted)
	}
	if s.Dropped != 0 || s.Discarded != 0 {
		t.Errorf("dropped %d, discarded %d, want 0", s.Dropped, s.Discarded)
	}
	if n := inflight(b); n != 0 {
		t.Errorf("broker counts %d unacknowledged messages after all were acknowledged", n)
	}
}

// inflight is the broker-wide count of unacknowledged QoS 1/2 messages.
func inflight(b *Broker) int64 { return atomic.LoadInt64(&b.srv.Info.Inflight) }

// With a data dir, a persistent session and its queued messages survive a
// restart of the broker.
func TestSessionsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	const n = 3000
	cnt := &counter{seen: map[string]int{}}

	first, err := New(Config{Listen: addr, DataDir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	if err := testenv.WaitTCP(addr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	sub := connect(t, first.URL(), "sub-restart", false, cnt.handle)
	subscribe(t, sub, "plant/#")
	sub.Disconnect(100)
	publish(t, first.URL(), "plant/a/b/pump2/current_l1", n)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	second := start(t, Config{Listen: addr, DataDir: dir})
	sub = connect(t, second.URL(), "sub-restart", false, cnt.handle)
	defer sub.Disconnect(100)
	waitFor(30*time.Second, func() bool { return cnt.distinct() >= n })
	if got := cnt.distinct(); got != n {
		t.Errorf("subscriber got %d distinct messages after restart, want %d", got, n)
	}
}

// With a data dir, messages still unacknowledged after a persistent
// session resumed survive a restart of the broker: the resume must not
// delete their records.
func TestQueuedMessagesSurviveResumeAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	const n = 500
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	first, err := New(Config{Listen: addr, DataDir: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	if err := testenv.WaitTCP(addr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	sub := connect(t, first.URL(), "sub-resume-restart", false, nil)
	subscribe(t, sub, "plant/#")
	sub.Disconnect(100)
	publish(t, first.URL(), "plant/a/b/pump4/pressure", n)

	// Resume, but never acknowledge: the handler blocks the client.
	unblock := make(chan struct{})
	var got atomic.Int64
	stuck := connect(t, first.URL(), "sub-resume-restart", false, func(paho.Client, paho.Message) {
		got.Add(1)
		<-unblock
	})
	waitFor(10*time.Second, func() bool { return got.Load() > 0 })
	if got.Load() == 0 {
		t.Fatal("resumed session received nothing")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(unblock)
	stuck.Disconnect(0)

	second := start(t, Config{Listen: addr, DataDir: dir})
	cnt := &counter{seen: map[string]int{}}
	sub = connect(t, second.URL(), "sub-resume-restart", false, cnt.handle)
	defer sub.Disconnect(100)
	waitFor(30*time.Second, func() bool { return cnt.distinct() >= n })
	if d := cnt.distinct(); d != n {
		t.Errorf("subscriber got %d distinct messages after resume and restart, want %d; missing %v", d, n, cnt.missing(n))
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, cfg := range []Config{{}, {Listen: "127.0.0.1:0", HighWater: MaxInflight}} {
		if _, err := New(cfg, log); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
}
