package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartmaint/smartmaint/collector/internal/alert"
	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func note(id int64, sev string) *alert.Notification {
	return &alert.Notification{Key: fmt.Sprintf("alert-%d-%d", id, id*10), AlertID: id, EventID: id * 10,
		Transition: alert.Opened, State: alert.StateOpen, Severity: sev, Sensor: fmt.Sprintf("plant1/l1/pump%d/temp", id),
		Site: "plant1", Asset: fmt.Sprintf("pump%d", id), Kind: "limit", Rule: "HH", Value: 97.5, Threshold: 90,
		PeakScore: 1, Count: 1, Since: t0, At: t0, Actor: "system", URL: fmt.Sprintf("https://c.example/api/v1/alerts/%d", id)}
}

func TestRouter(t *testing.T) {
	r := NewRouter([]string{"hook", "mail", "andon"}, []config.Route{
		{MinSeverity: "major", Channels: []string{"mail", "hook"}},
		{Sites: []string{"plant1"}, Assets: []string{"pump1"}, Transitions: []string{"opened"}, Channels: []string{"andon"}},
	})
	n := func(sev, site, asset string, tr alert.Transition) *alert.Notification {
		return &alert.Notification{Severity: sev, Site: site, Asset: asset, Transition: tr}
	}
	for _, c := range []struct {
		n    *alert.Notification
		want []string
	}{
		{n("critical", "plant2", "x", alert.Opened), []string{"hook", "mail"}},
		{n("minor", "plant2", "x", alert.Opened), nil},
		{n("minor", "plant1", "pump1", alert.Opened), []string{"andon"}},
		{n("major", "plant1", "pump1", alert.Opened), []string{"hook", "mail", "andon"}},
		{n("major", "plant1", "pump1", alert.Acknowledged), []string{"hook", "mail"}},
	} {
		if diff := cmp.Diff(c.want, r.Channels(c.n)); diff != "" {
			t.Errorf("%+v (-want +got):\n%s", *c.n, diff)
		}
	}
	if got := NewRouter([]string{"a", "b"}, nil).Channels(n("warning", "", "", alert.Resolved)); len(got) != 2 {
		t.Errorf("no routes: %v, want every channel", got)
	}
}

func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{{1, 5 * time.Second}, {2, 10 * time.Second}, {3, 20 * time.Second}, {8, 10 * time.Minute}, {1000, 10 * time.Minute}} {
		if got := Backoff(c.attempt, 5*time.Second, 10*time.Minute); got != c.want {
			t.Errorf("Backoff(%d) = %s, want %s", c.attempt, got, c.want)
		}
	}
}

// TestLimiterSynctest: 6 messages per minute with a burst of 2: two at
// once, then one every 10 s.
func TestLimiterSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		l := newLimiter(6.0/60, 2, time.Now)
		var at []time.Duration
		for range 5 {
			if !l.wait(t.Context()) {
				t.Fatal("wait failed")
			}
			l.take()
			at = append(at, time.Since(start))
		}
		want := []time.Duration{0, 0, 10 * time.Second, 20 * time.Second, 30 * time.Second}
		if diff := cmp.Diff(want, at); diff != "" {
			t.Errorf("send times (-want +got):\n%s", diff)
		}
	})
}

func TestVerifySignature(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"idempotency_key":"k"}`)
	ts := t0.Unix()
	sig := Sign(secret, ts, body)
	for _, c := range []struct {
		name      string
		secret    []byte
		ts, sig   string
		body      []byte
		now       time.Time
		wantError error
	}{
		{"good", secret, fmt.Sprint(ts), sig, body, t0.Add(time.Minute), nil},
		{"tampered body", secret, fmt.Sprint(ts), sig, []byte(`{"idempotency_key":"x"}`), t0, ErrBadSignature},
		{"wrong secret", []byte("other"), fmt.Sprint(ts), sig, body, t0, ErrBadSignature},
		{"timestamp changed", secret, fmt.Sprint(ts + 1), sig, body, t0, ErrBadSignature},
		{"replayed late", secret, fmt.Sprint(ts), sig, body, t0.Add(DefaultReplayWindow + time.Second), ErrStale},
		{"from the future", secret, fmt.Sprint(ts), sig, body, t0.Add(-DefaultReplayWindow - time.Second), ErrStale},
		{"garbage timestamp", secret, "soon", sig, body, t0, ErrBadSignature},
	} {
		err := VerifySignature(c.secret, c.ts, c.sig, c.body, c.now, DefaultReplayWindow)
		if !errors.Is(err, c.wantError) || (c.wantError == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.wantError)
		}
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add("1772366400", Sign([]byte("k"), 1772366400, []byte("{}")), []byte("{}"))
	f.Add("x", "v1=00", []byte(""))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		err := VerifySignature([]byte("k"), ts, sig, body, time.Unix(1772366400, 0), DefaultReplayWindow)
		if err == nil && sig != Sign([]byte("k"), mustInt(ts), body) {
			t.Errorf("accepted a signature that is not ours")
		}
	})
}

func mustInt(s string) int64 {
	var n int64
	fmt.Sscan(s, &n)
	return n
}

// testDB is a migrated database and a pool on it.
func testDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := testenv.Postgres(t)
	db, err := store.Open(context.Background(), dsn, store.Options{Timescale: store.TimescaleOff, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return dsn, db.Pool()
}

func enqueue(t *testing.T, pool *pgxpool.Pool, o *Outbox, ns ...*alert.Notification) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, n := range ns {
			if err := o.Enqueue(ctx, tx, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// receiver is a webhook endpoint that verifies every signature.
type receiver struct {
	secret []byte
	mu     sync.Mutex
	keys   map[string]int // item idempotency key → deliveries
	msgs   []webhookMsg
	fail   atomic.Int32 // answer 503 this many times
	bad    atomic.Int32 // signatures that failed
}

type webhookMsg struct {
	Header string
	Body   struct {
		IdempotencyKey string               `json:"idempotency_key"`
		Title          string               `json:"title"`
		Items          []alert.Notification `json:"items"`
	}
}

func newReceiver(t *testing.T, secret string) (*receiver, *httptest.Server) {
	r := &receiver{secret: []byte(secret), keys: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := VerifySignature(r.secret, req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, time.Now(), DefaultReplayWindow); err != nil {
			r.bad.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if r.fail.Load() > 0 {
			r.fail.Add(-1)
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var m webhookMsg
		m.Header = req.Header.Get(HeaderIdempotency)
		if err := json.Unmarshal(body, &m.Body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		for _, it := range m.Body.Items {
			r.keys[it.Key]++
		}
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return r, srv
}

// TestWebhookOutbox: queued notifications wait for the group window and
// go out as one signed message; a 503 is retried with backoff; metrics
// count the results and the outbox depth.
func TestWebhookOutbox(t *testing.T) {
	_, pool := testDB(t)
	rcv, srv := newReceiver(t, "hook-secret")
	var now atomic.Int64
	now.Store(t0.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	o := &Outbox{Router: NewRouter([]string{"hook"}, nil), Now: clock}
	enqueue(t, pool, o, note(1, "critical"), note(2, "major"))
	enqueue(t, pool, o, note(3, "minor"))
	enqueue(t, pool, o, note(3, "minor")) // the same transition again: not queued twice
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, pool)
	ch := Channel{Name: "hook", Sender: &WebhookSender{URL: srv.URL, Secret: []byte("hook-secret"), Client: srv.Client()}}
	w := NewWorkers(pool, Options{GroupWindow: 10 * time.Second, BackoffMin: 5 * time.Second, BackoffMax: time.Minute,
		Now: clock}, []Channel{ch}, discard(), m)
	ctx := context.Background()
	if n, err := w.DeliverOnce(ctx, &ch); n != 0 || err != nil {
		t.Fatalf("inside the group window: delivered %d, %v", n, err)
	}
	if got := testutil.ToFloat64(m.results.WithLabelValues("hook", "sent")); got != 0 {
		t.Fatal(got)
	}
	now.Add(int64(10 * time.Second))
	rcv.fail.Store(1)
	if n, err := w.DeliverOnce(ctx, &ch); n != 0 || err != nil {
		t.Fatalf("503: delivered %d, %v", n, err)
	}
	if n, _ := w.DeliverOnce(ctx, &ch); n != 0 {
		t.Fatalf("retried before the backoff: %d", n)
	}
	now.Add(int64(5 * time.Second))
	if n, err := w.DeliverOnce(ctx, &ch); n != 3 || err != nil {
		t.Fatalf("after backoff: delivered %d, %v", n, err)
	}
	if rcv.bad.Load() != 0 || len(rcv.msgs) != 1 {
		t.Fatalf("bad signatures %d, messages %d", rcv.bad.Load(), len(rcv.msgs))
	}
	msg := rcv.msgs[0]
	if len(msg.Body.Items) != 3 || msg.Header != msg.Body.IdempotencyKey || msg.Body.Title != "[CRITICAL] 3 alert notifications" {
		t.Errorf("message: %+v", msg)
	}
	it := msg.Body.Items[0]
	if it.Key != "alert-1-10" || it.URL != "https://c.example/api/v1/alerts/1" || it.Sensor == "" || it.Since.IsZero() {
		t.Errorf("item: %+v", it)
	}
	for res, want := range map[string]float64{"sent": 3, "retry": 3, "failed": 0} {
		if got := testutil.ToFloat64(m.results.WithLabelValues("hook", res)); got != want {
			t.Errorf("notifications %s: %v, want %v", res, got, want)
		}
	}
	enqueue(t, pool, o, note(4, "warning"))
	if c, err := testutil.GatherAndCount(reg, "smartmaint_collector_outbox_pending", "smartmaint_collector_outbox_oldest_age_seconds"); err != nil || c != 2 {
		t.Errorf("outbox gauges: %d series, %v", c, err)
	}
}

// TestPermanentFailure: a 400 is not retried; the row is marked failed.
func TestPermanentFailure(t *testing.T) {
	_, pool := testDB(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", 400) }))
	defer srv.Close()
	o := &Outbox{Router: NewRouter([]string{"hook"}, nil)}
	enqueue(t, pool, o, note(1, "critical"))
	ch := Channel{Name: "hook", Sender: &WebhookSender{URL: srv.URL, Secret: []byte("k"), Client: srv.Client()}}
	w := NewWorkers(pool, Options{}, []Channel{ch}, discard(), nil)
	if n, err := w.DeliverOnce(context.Background(), &ch); n != 0 || err != nil {
		t.Fatal(n, err)
	}
	var failed bool
	var lastErr string
	pool.QueryRow(context.Background(), `SELECT failed_at IS NOT NULL, last_error FROM notification_outbox`).Scan(&failed, &lastErr)
	if !failed || lastErr == "" {
		t.Errorf("failed %v, last error %q", failed, lastErr)
	}
}

// TestTwoCollectorsWithCrash: two worker sets on two pools (two
// collectors) deliver 40 notifications to one webhook. Collector A dies
// (its connection is closed) after its first send and before marking it
// sent. Every notification arrives; the one caught by the crash arrives
// twice with the same idempotency key; nothing else is duplicated.
func TestTwoCollectorsWithCrash(t *testing.T) {
	dsn, pool := testDB(t)
	poolB, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer poolB.Close()
	rcv, srv := newReceiver(t, "k")
	o := &Outbox{Router: NewRouter([]string{"hook"}, nil)}
	const n = 40
	for i := range n {
		enqueue(t, pool, o, note(int64(i+1), "major"))
	}
	mk := func(p *pgxpool.Pool) *Workers {
		ch := Channel{Name: "hook", Sender: &WebhookSender{URL: srv.URL, Secret: []byte("k"), Client: srv.Client()}}
		return NewWorkers(p, Options{PollInterval: 10 * time.Millisecond, GroupWindow: 0, MaxGroup: 1}, []Channel{ch}, discard(), nil)
	}
	a, b := mk(pool), mk(poolB)
	var crashed atomic.Bool
	crashKey := make(chan string, 1)
	ctxA, stopA := context.WithCancel(context.Background())
	a.afterSend = func(ctx context.Context, tx pgx.Tx, m *Message) error {
		if crashed.CompareAndSwap(false, true) {
			crashKey <- m.Key
			tx.Conn().Close(ctx) // the process dies: PostgreSQL rolls the claim back
			stopA()
			return errors.New("crashed between send and mark")
		}
		return nil
	}
	ctxB, stopB := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctxA) })
	wg.Go(func() { b.Run(ctxB) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pending int
		pool.QueryRow(context.Background(), `SELECT count(*) FROM notification_outbox WHERE sent_at IS NULL`).Scan(&pending)
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopA()
	stopB()
	wg.Wait()
	if !crashed.Load() {
		t.Fatal("collector A never sent anything")
	}
	key := <-crashKey
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.keys) != n {
		t.Errorf("%d distinct notifications delivered, want %d", len(rcv.keys), n)
	}
	for k, c := range rcv.keys {
		want := 1
		if k == key {
			want = 2 // the documented crash window
		}
		if c != want {
			t.Errorf("%s delivered %d times, want %d", k, c, want)
		}
	}
}
