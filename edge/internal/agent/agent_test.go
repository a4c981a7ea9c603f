package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/edge/internal/config"
	"github.com/smartmaint/smartmaint/edge/internal/mapping"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// recordingSink stands in for the durable buffer inside this package's
// tests: it keeps every reading it accepted. fail, when set, decides per
// call whether Write fails; block makes Write wait until released.
type recordingSink struct {
	mu    sync.Mutex
	rs    []wire.Reading
	calls int
	fail  func(call int) error
	block chan struct{}
}

func (s *recordingSink) Write(ctx context.Context, rs []wire.Reading) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	fail, block := s.fail, s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(call); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.rs = append(s.rs, rs...)
	s.mu.Unlock()
	return nil
}

func (s *recordingSink) WriteEvents(context.Context, []wire.Event) error { return nil }

func (s *recordingSink) readings() []wire.Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wire.Reading(nil), s.rs...)
}

func (s *recordingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rs)
}

// testConfig renders a config around the given broker and subscriptions
// section and loads it through the real config path.
func testConfig(t testing.TB, brokerYAML, subsYAML string) (*config.Config, mapping.Profiles) {
	t.Helper()
	text := fmt.Sprintf("version: 1\nedge_id: test-edge\ndata_dir: data\nadmin: {listen: \"127.0.0.1:0\"}\nbroker:\n%s\n  reconnect: {initial: 100ms, max: 500ms}\n  drain_timeout: 3s\ncollector: {url: \"http://127.0.0.1:8080\"}\nsubscriptions:\n%s\n", brokerYAML, subsYAML)
	file := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, profiles, probs := config.Load(file)
	if len(probs) > 0 {
		t.Fatalf("config:\n%s\nproblems:\n%v", text, probs)
	}
	return cfg, profiles
}

type running struct {
	a      *Agent
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("agent Run: %v", r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not stop")
	}
}

func startAgent(t testing.TB, cfg *config.Config, profiles mapping.Profiles, sink Sink) *running {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := New(Options{Config: cfg, Profiles: profiles, Sink: sink, Logger: logger, Registry: prometheus.NewRegistry(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = a.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
		}
	})
	waitFor(t, 15*time.Second, "agent connected", a.sub.Connected)
	return r
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond; integration tests wait on real processes, so this is
// a deadline, not a timing assertion.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func publisher(t testing.TB, url string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("pub-" + testenv.RandomID(4)).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t testing.TB, c mqtt.Client, qos byte, topic string, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// getJSON GETs url with the bearer token (none when "") and decodes the
// answer into v.
func getJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v\n%s", url, err, b)
		}
	}
	return resp.StatusCode
}

func sensorIDs(rs []wire.Reading) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		m[r.Sensor]++
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
