package forward

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/smartmaint/smartmaint/edge/internal/buffer"
)

// fakeQueue holds one batch of readings; Ack closes acked. A fake is fine
// here: these tests are about the forwarder's timing, run in a synctest
// bubble where a bbolt file would only add noise.
type fakeQueue struct {
	mu      sync.Mutex
	batch   *buffer.Batch
	out     bool
	acked   chan struct{}
	changed chan struct{}
}

func newFakeQueue(n int) *fakeQueue {
	return &fakeQueue{batch: &buffer.Batch{ID: "b1", Readings: readings("s", 0, n)}, acked: make(chan struct{}), changed: make(chan struct{})}
}

func (q *fakeQueue) Peek(context.Context, int) (*buffer.Batch, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.batch == nil || q.out {
		return nil, nil
	}
	q.out = true
	return q.batch, nil
}

func (q *fakeQueue) Ack(context.Context, *buffer.Batch) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.batch = nil
	close(q.acked)
	return nil
}

func (q *fakeQueue) Release(*buffer.Batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.out = false
}

func (q *fakeQueue) DeadLetter(context.Context, *buffer.Batch, []byte, string) error {
	return errors.New("unexpected dead letter")
}
func (q *fakeQueue) Changed() <-chan struct{} { return q.changed }
func (q *fakeQueue) Stats() buffer.Stats      { return buffer.Stats{} }

func (q *fakeQueue) Available() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.batch == nil || q.out {
		return 0
	}
	return q.batch.Len()
}

// step is one scripted answer; err simulates a network failure.
type step struct {
	code   int
	header func(now time.Time) http.Header
	err    error
}

// scriptTransport answers requests from a script and records when each
// request came (bubble time).
type scriptTransport struct {
	mu    sync.Mutex
	steps []step
	at    []time.Time
}

func (s *scriptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, req.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.at = append(s.at, now)
	st := step{code: 200}
	if len(s.steps) > 0 {
		st, s.steps = s.steps[0], s.steps[1:]
	}
	if st.err != nil {
		return nil, st.err
	}
	h := http.Header{}
	if st.header != nil {
		h = st.header(now)
	}
	body := "busy"
	if st.code == 200 {
		body = `{"batch_id":"b1","accepted":3,"server_time":"` + now.Format(time.RFC3339Nano) + `"}`
	}
	return &http.Response{StatusCode: st.code, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
}

func retryAfterHdr(v string) func(time.Time) http.Header {
	return func(time.Time) http.Header { return http.Header{"Retry-After": {v}} }
}

func TestBackoffAndRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &scriptTransport{steps: []step{
			{code: 503, header: retryAfterHdr("7")},
			{code: 429, header: func(now time.Time) http.Header {
				return http.Header{"Retry-After": {now.Add(30 * time.Second).UTC().Format(http.TimeFormat)}}
			}},
			{code: 503},
			{err: errors.New("connection refused")},
			{code: 500},
			{code: 500},
			{code: 500},
			{code: 503, header: retryAfterHdr("100000")},
			{code: 200},
		}}
		cfg := Default()
		cfg.URL = "http://collector.test"
		cfg.StatusInterval = 0
		cfg.Backoff.Initial = time.Second
		cfg.Backoff.Max = 5 * time.Second
		cfg.Backoff.MaxRetryAfter = 10 * time.Minute
		q := newFakeQueue(3)
		f, err := New(cfg, q, Options{EdgeID: testEdge, Token: testToken, Client: &http.Client{Transport: tr}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- f.Run(ctx) }()
		<-q.acked
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		var gaps []time.Duration
		for i := 1; i < len(tr.at); i++ {
			gaps = append(gaps, tr.at[i].Sub(tr.at[i-1]))
		}
		if len(gaps) != 8 {
			t.Fatalf("%d retries, want 8: %v", len(gaps), gaps)
		}
		within := func(i int, lo, hi time.Duration, why string) {
			if gaps[i] < lo || gaps[i] > hi {
				t.Errorf("wait %d = %s, want in [%s, %s] (%s)", i, gaps[i], lo, hi, why)
			}
		}
		within(0, 7*time.Second, 8750*time.Millisecond, "Retry-After: 7, spread by up to a quarter")
		within(1, 29*time.Second, 37500*time.Millisecond, "Retry-After as an HTTP date 30s ahead (second resolution), spread")
		within(2, 2*time.Second, 4*time.Second, "third failure: backoff 4s with equal jitter")
		within(3, 2500*time.Millisecond, 5*time.Second, "network error: backoff capped at 5s")
		within(4, 2500*time.Millisecond, 5*time.Second, "capped")
		within(5, 2500*time.Millisecond, 5*time.Second, "capped")
		within(6, 2500*time.Millisecond, 5*time.Second, "capped")
		within(7, 10*time.Minute, 12500*time.Second/10, "Retry-After beyond max_retry_after is capped, then spread")
		if !f.State().Up {
			t.Error("uplink not up after success")
		}
	})
}

func TestUnauthorizedWaitsAtCapAndClears(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &scriptTransport{steps: []step{{code: 401}, {code: 403}, {code: 200}}}
		cfg := Default()
		cfg.URL = "http://collector.test"
		cfg.StatusInterval = 0
		cfg.Backoff.Initial = time.Second
		cfg.Backoff.Max = time.Minute
		q := newFakeQueue(3)
		f, err := New(cfg, q, Options{EdgeID: testEdge, Token: testToken, Client: &http.Client{Transport: tr}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- f.Run(ctx) }()
		synctest.Wait()
		if got := f.State().Alarms; len(got) != 1 || got[0] != AlarmUnauthorized {
			t.Errorf("alarms after 401: %v", got)
		}
		<-q.acked
		synctest.Wait() // the worker records the success after Ack
		if got := f.State().Alarms; len(got) != 0 {
			t.Errorf("alarms after success: %v", got)
		}
		cancel()
		<-done
		for i := 1; i < len(tr.at); i++ {
			if d := tr.at[i].Sub(tr.at[i-1]); d < 30*time.Second || d > time.Minute {
				t.Errorf("wait after an auth failure %s, want in [30s, 1m] (the backoff cap with jitter)", d)
			}
		}
	})
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"120", 2 * time.Minute},
		{"999999999", 24 * time.Hour},
		{"Thu, 26 Nov 2026 15:00:30 GMT", 30 * time.Second},
		{"Thu, 26 Nov 2026 14:00:00 GMT", 0},
		{"soon", 0},
	} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// Edges refused together spread their returns over a quarter of the
// collector's Retry-After, never coming back sooner than asked.
func TestSpreadRetryAfter(t *testing.T) {
	const d = 8 * time.Second
	lo, hi := time.Duration(1<<62), time.Duration(0)
	seconds := map[time.Duration]bool{}
	for range 1000 {
		w := spreadRetryAfter(d)
		if w < d || w >= d+d/4 {
			t.Fatalf("spreadRetryAfter(%s) = %s, want in [%s, %s)", d, w, d, d+d/4)
		}
		lo, hi = min(lo, w), max(hi, w)
		seconds[w.Truncate(time.Second)] = true
	}
	if hi-lo < d/8 || len(seconds) < 2 {
		t.Errorf("1,000 waits span only %s..%s: a refused fleet would return together", lo, hi)
	}
}
