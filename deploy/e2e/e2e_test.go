//go:build e2e

package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// Volumes: moderate, so the suite stays within a few minutes on a small
// shared machine while every fault lands in the middle of a real flow.
const (
	readings     = 30000
	sensors      = 300
	rate         = 3000 // readings/s: a 10 s flow
	settleWithin = 3 * time.Minute
	publishLimit = 5 * time.Minute
)

// stack is one scenario's system: its own database, broker, collector and
// edge.
type stack struct {
	dir    string
	dbURL  string
	pg     *testenv.PGCluster // set when the scenario owns its PostgreSQL
	broker *testenv.Mosquitto
	coll   *collector
	edge   *edge
}

type stackOptions struct {
	name           string
	privatePG      bool
	maxBytes       int64
	collectorExtra string
}

func newStack(t *testing.T, bins binaries, o stackOptions) *stack {
	t.Helper()
	s := &stack{dir: t.TempDir()}
	if o.privatePG {
		s.pg = testenv.StartPostgresCluster(t)
		s.dbURL = s.pg.CreateDatabase("e2e")
	} else {
		s.dbURL = testenv.Postgres(t)
	}
	s.broker = testenv.StartMosquitto(t, "")
	edgeID := "e2e-" + o.name
	s.coll = startCollector(t, s.dir, bins.collector, s.dbURL, edgeID, o.collectorExtra)
	tokenFile := filepath.Join(s.dir, "edge.token")
	if err := os.WriteFile(tokenFile, []byte(s.coll.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.edge = startEdge(t, s.dir, bins.edge, edgeOptions{id: edgeID, broker: s.broker.URL, collector: s.coll.base,
		tokenFile: tokenFile, maxBytes: o.maxBytes})
	return s
}

func (s *stack) publish(t *testing.T, total, nSensors int, r float64) *publication {
	t.Helper()
	return publish(t, s.broker.URL, total, nSensors, r, noisy(rand.New(rand.NewPCG(1, 2))))
}

// TestE2E runs the scenarios one after another (the machine is small and
// shared: in parallel they would measure each other) and prints the
// table.
func TestE2E(t *testing.T) {
	bins := findBinaries(t)
	scenarios := []struct {
		name string
		run  func(*testing.T, binaries) result
	}{
		{"steady", steadyFlow},
		{"edge-kill-9", edgeKill},
		{"collector-restart", collectorRestart},
		{"postgres-restart", postgresRestart},
		{"broker-restart", brokerRestart},
		{"queue-budget-outage", budgetOutage},
		{"fault-alert", faultAlert},
	}
	var rs []result
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			done := false
			defer func() {
				if !done {
					rs = append(rs, result{name: sc.name, note: "FAILED before counting"})
				}
			}()
			start := time.Now()
			r := sc.run(t, bins)
			r.name = sc.name
			check(t, r)
			if t.Failed() {
				r.note = "FAILED; " + r.note
			}
			r.note += fmt.Sprintf(" (%s)", time.Since(start).Round(time.Second))
			rs = append(rs, r)
			done = true
		})
	}
	fmt.Printf("\nend-to-end results (latency: reading timestamp at publish → row written in the committing transaction)\n%s\n", table(rs))
}

// steadyFlow: every published reading is stored once; latency is measured
// per reading.
func steadyFlow(t *testing.T, bins binaries) result {
	s := newStack(t, bins, stackOptions{name: "steady"})
	pub := s.publish(t, readings, sensors, rate)
	pub.wait(t, publishLimit)
	r := settle(t, "steady", s.dbURL, s.edge, pub, settleWithin)
	r.note = fmt.Sprintf("%d sensors at %d/s", sensors, rate)
	return r
}

// edgeKill: sm-edge is killed with SIGKILL at every tenth of the flow (nine
// times) and restarted each time with the same data directory and client
// id.
func edgeKill(t *testing.T, bins binaries) result {
	s := newStack(t, bins, stackOptions{name: "kill"})
	pub := s.publish(t, readings, sensors, rate)
	kills := 0
	for k := 1; k <= 9; k++ {
		pub.waitAcked(t, k*readings/10, publishLimit)
		s.edge.p.Kill()
		kills++
		s.edge.start(t)
	}
	pub.wait(t, publishLimit)
	r := settle(t, "edge-kill-9", s.dbURL, s.edge, pub, settleWithin)
	r.note = fmt.Sprintf("%d × kill -9", kills)
	return r
}

// collectorRestart: sm-collector is killed (kill -9, so batches in flight
// die mid-transaction) at 25 % of the flow and started again at 75 %.
func collectorRestart(t *testing.T, bins binaries) result {
	s := newStack(t, bins, stackOptions{name: "collector"})
	pub := s.publish(t, readings, sensors, rate)
	pub.waitAcked(t, readings/4, publishLimit)
	s.coll.p.Kill()
	down := time.Now()
	pub.waitAcked(t, readings*3/4, publishLimit)
	s.coll.start(t)
	outage := time.Since(down)
	pub.wait(t, publishLimit)
	r := settle(t, "collector-restart", s.dbURL, s.edge, pub, settleWithin)
	r.note = fmt.Sprintf("collector killed, down %s", outage.Round(100*time.Millisecond))
	return r
}

// postgresRestart: the scenario's own PostgreSQL cluster is shut down
// (pg_ctl -m fast) from 30 % to 65 % of the flow, then started again. The
// collector must ride it out without exiting.
func postgresRestart(t *testing.T, bins binaries) result {
	s := newStack(t, bins, stackOptions{name: "postgres", privatePG: true})
	pub := s.publish(t, readings, sensors, rate)
	pub.waitAcked(t, readings*3/10, publishLimit)
	s.pg.Stop()
	down := time.Now()
	pub.waitAcked(t, readings*65/100, publishLimit)
	s.pg.Start()
	outage := time.Since(down)
	pub.wait(t, publishLimit)
	r := settle(t, "postgres-restart", s.dbURL, s.edge, pub, settleWithin)
	if s.coll.p.Exited() {
		t.Errorf("sm-collector exited during the database restart:\n%s", testenv.Tail(s.coll.p.LogPath, 30))
	}
	r.note = fmt.Sprintf("database down %s", outage.Round(100*time.Millisecond))
	return r
}

// brokerRestart: the private Mosquitto is stopped and started twice during
// the flow; sm-edge's persistent session gets what was queued for it. The
// publisher republishes (same identity) whatever the broker did not
// acknowledge.
func brokerRestart(t *testing.T, bins binaries) result {
	s := newStack(t, bins, stackOptions{name: "broker"})
	pub := s.publish(t, readings, sensors, rate)
	restarts := 0
	for _, frac := range []float64{0.3, 0.65} {
		pub.waitAcked(t, int(frac*readings), publishLimit)
		s.broker.Stop()
		s.broker.Start()
		restarts++
	}
	pub.wait(t, publishLimit)
	r := settle(t, "broker-restart", s.dbURL, s.edge, pub, settleWithin)
	r.note = fmt.Sprintf("%d broker restarts, %d publishes retried", restarts, pub.retried())
	return r
}

// budgetOutage: the collector is down for the whole flow and the edge's
// queue budget is far smaller than the flow, so the edge sheds; after the
// collector returns, stored + gap-accounted = published.
func budgetOutage(t *testing.T, bins binaries) result {
	const budget = 1 << 20
	const total = 40000
	s := newStack(t, bins, stackOptions{name: "budget", maxBytes: budget})
	s.coll.p.Stop()
	pub := s.publish(t, total, sensors, 4000)
	pub.wait(t, publishLimit)
	testenv.WaitFor(t, time.Minute, "the edge to receive every reading and shed some", func() bool {
		st := s.edge.status()
		if st == nil {
			return false
		}
		b, _ := st["broker"].(map[string]any)
		rcv, _ := b["received"].(float64)
		return int(rcv) >= total && s.edge.drops() > 0
	})
	s.coll.start(t)
	r := settle(t, "queue-budget-outage", s.dbURL, s.edge, pub, settleWithin)
	if r.gapAccounted == 0 {
		t.Errorf("the outage did not exceed the queue budget: nothing was shed")
	}
	r.note = fmt.Sprintf("budget %d KiB, collector down for the whole flow", budget>>10)
	return r
}

// webhookReceiver verifies the HMAC signature of every call and keeps the
// bodies.
type webhookReceiver struct {
	secret []byte
	mu     sync.Mutex
	bodies [][]byte
	bad    []string
}

func (w *webhookReceiver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.bad = append(w.bad, "read body: "+err.Error())
		rw.WriteHeader(http.StatusBadRequest)
		return
	}
	ts := r.Header.Get("X-Smartmaint-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		w.bad = append(w.bad, "timestamp "+ts)
		rw.WriteHeader(http.StatusUnauthorized)
		return
	}
	mac := hmac.New(sha256.New, w.secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-Smartmaint-Signature"))) {
		w.bad = append(w.bad, "signature mismatch")
		rw.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.bodies = append(w.bodies, body)
	rw.WriteHeader(http.StatusOK)
}

func (w *webhookReceiver) snapshot() ([][]byte, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.bodies...), append([]string(nil), w.bad...)
}

// faultAlert: one sensor's signal goes above the profile's HH limit and
// stays there; that makes exactly one alert and one signed webhook
// notification, while the other sensors' readings keep flowing.
func faultAlert(t *testing.T, bins binaries) result {
	const (
		nSensors = 20
		perSec   = 10 // readings per sensor and second
		total    = nSensors * perSec * 15
		faultAt  = perSec * 5 // reading index of the faulty sensor
	)
	secret := []byte("e2e-webhook-" + testenv.RandomID(8))
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "webhook.secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	recv := &webhookReceiver{secret: secret}
	hook := httptest.NewServer(recv)
	t.Cleanup(hook.Close)
	extra := fmt.Sprintf(`alerts: {sweep_interval: 1s}
notify:
  poll_interval: 100ms
  group_window: 1s
  backoff_min: 200ms
  backoff_max: 2s
  channels:
    - {name: hook, type: webhook, url: %q, secret: {file: %q}}
`, hook.URL, secretFile)
	s := newStack(t, bins, stackOptions{name: "alert", collectorExtra: extra})
	rng := rand.New(rand.NewPCG(3, 4))
	base := noisy(rng)
	var mu sync.Mutex
	value := func(i, n int) float64 {
		if i == 0 && n >= faultAt {
			mu.Lock()
			defer mu.Unlock()
			return 22 + rng.Float64()*0.3 // above HH (21 mA): a failed transmitter
		}
		return base(i, n)
	}
	pub := publish(t, s.broker.URL, total, nSensors, nSensors*perSec, value)
	pub.wait(t, publishLimit)
	r := settle(t, "fault-alert", s.dbURL, s.edge, pub, settleWithin)

	// The alert, and its notification sent.
	ctx := t.Context()
	conn := connect(t, s.dbURL)
	testenv.WaitFor(t, time.Minute, "the alert's notification to be sent", func() bool {
		var pending int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM notification_outbox WHERE sent_at IS NULL AND failed_at IS NULL`).Scan(&pending)
		bodies, _ := recv.snapshot()
		return err == nil && pending == 0 && len(bodies) > 0
	})
	var alerts int
	var sensor, state, kind string
	if err := conn.QueryRow(ctx, `SELECT count(*) OVER (), sensor, state, kind FROM alerts LIMIT 1`).Scan(&alerts, &sensor, &state, &kind); err != nil {
		t.Fatalf("read alerts: %v", err)
	}
	if alerts != 1 || sensor != sensorID(0) || state != "open" || kind != "limit" {
		t.Errorf("alerts: %d rows, first %s %s %s; want exactly one open limit alert for %s", alerts, sensor, state, kind, sensorID(0))
	}
	bodies, bad := recv.snapshot()
	if len(bad) > 0 {
		t.Errorf("webhook calls that failed verification: %v", bad)
	}
	items := 0
	for _, b := range bodies {
		var msg struct {
			Items []struct {
				Sensor     string `json:"sensor"`
				Transition string `json:"transition"`
			} `json:"items"`
		}
		if err := json.Unmarshal(b, &msg); err != nil {
			t.Errorf("webhook body: %v: %.300s", err, b)
		}
		items += len(msg.Items)
	}
	if len(bodies) != 1 || items != 1 {
		t.Errorf("webhook: %d messages with %d notifications, want exactly 1 with 1:\n%s", len(bodies), items, bodies)
	}
	// The API shows it to a viewer.
	code, b, err := testenv.HTTPGet(ctx, s.coll.base+"/api/v1/alerts", s.coll.apiKey)
	var list struct {
		Items []struct {
			Sensor string `json:"sensor"`
		} `json:"items"`
	}
	if err != nil || code != 200 || json.Unmarshal(b, &list) != nil || len(list.Items) != 1 || list.Items[0].Sensor != sensorID(0) {
		t.Errorf("GET /api/v1/alerts: %d %v %.300s", code, err, b)
	}
	r.note = fmt.Sprintf("%d alert, %d webhook message, %d notification", alerts, len(bodies), items)
	return r
}
