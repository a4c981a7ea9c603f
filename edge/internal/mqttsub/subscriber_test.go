package mqttsub

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for n := range 7 {
		got = append(got, b.Delay(n))
	}
	want := []time.Duration{100e6, 200e6, 400e6, 800e6, 1e9, 1e9, 1e9}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	if d := (Backoff{}).Delay(100); d != 30*time.Second {
		t.Errorf("default cap = %v, want 30s", d)
	}
}

// TestReconnectBackoffTiming: with no broker listening, connection
// attempts follow the capped exponential backoff. Run in a synctest bubble,
// so the delays are checked on the fake clock without sleeping.
func TestReconnectBackoffTiming(t *testing.T) {
	port := testenv.FreePort(t) // nothing listens there
	synctest.Test(t, func(t *testing.T) {
		cfg := Default()
		cfg.URL = "tcp://127.0.0.1:" + strconv.Itoa(port)
		cfg.Reconnect = Backoff{Initial: time.Second, Max: 4 * time.Second}
		cfg.ConnectTimeout = time.Second
		h := &nopHandler{}
		s, err := New(Options{Config: cfg, ClientID: "backoff", Filters: []Filter{{Topic: "x", QoS: 1}}, Handler: h, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var attempts []time.Duration
		start := time.Now()
		s.onAttempt = func() {
			mu.Lock()
			attempts = append(attempts, time.Since(start).Round(100*time.Millisecond))
			mu.Unlock()
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = s.Run(ctx); close(done) }()
		time.Sleep(16 * time.Second)
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		// Attempts at 0, then +1s, +2s, +4s, +4s (cap): 0, 1, 3, 7, 11, 15.
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second, 15 * time.Second}
		if len(attempts) != len(want) {
			t.Fatalf("attempts at %v, want %v", attempts, want)
		}
		for i := range want {
			if attempts[i] != want[i] {
				t.Fatalf("attempts at %v, want %v", attempts, want)
			}
		}
		if st := s.Status(); st.State != StateDisconnected || st.Reconnects != uint64(len(want)) || !strings.Contains(st.LastError, "connect") {
			t.Errorf("status %+v", st)
		}
	})
}

type nopHandler struct{}

func (nopHandler) HandleBatch(_ context.Context, msgs []Message) {
	for i := range msgs {
		msgs[i].Ack()
	}
}
