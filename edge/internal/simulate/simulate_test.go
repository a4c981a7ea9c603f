package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

func TestAppendPayload(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		v    float64
		ms   bool
		want string
	}{
		{3.21749, true, `{"v":3.2175,"ts":1795687200123,"q":"good"}`},
		{-0.5, false, `{"v":-0.5,"ts":1795687200123456,"q":"good"}`},
		{150, true, `{"v":150,"ts":1795687200123,"q":"good"}`},
	} {
		got := string(AppendPayload(nil, tc.v, ts, tc.ms))
		if got != tc.want {
			t.Errorf("AppendPayload(%v, ms=%v) = %s, want %s", tc.v, tc.ms, got, tc.want)
		}
	}
}

// recorder is a persistent QoS 1 subscriber that keeps every message.
type recorder struct {
	mu   sync.Mutex
	msgs map[string][]string // topic → payloads in arrival order
	n    int
}

func record(t *testing.T, url, filter string) *recorder {
	t.Helper()
	r := &recorder{msgs: map[string][]string{}}
	o := paho.NewClientOptions().AddBroker(url).SetClientID("rec-" + testenv.RandomID(6)).SetCleanSession(false).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			r.mu.Lock()
			r.msgs[m.Topic()] = append(r.msgs[m.Topic()], string(m.Payload()))
			r.n++
			r.mu.Unlock()
		})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return r
}

func (r *recorder) wait(n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		got := r.n
		r.mu.Unlock()
		if got >= n {
			// Give duplicates or extras a moment to show up.
			time.Sleep(200 * time.Millisecond)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bySensor re-keys a recording by sensor id (the topic without prefix).
func (r *recorder) bySensor(prefix string) map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for topic, p := range r.msgs {
		out[strings.TrimPrefix(topic, prefix+"/plant/")] = append([]string(nil), p...)
	}
	return out
}

type runResult struct {
	sum    Summary
	got    map[string][]string
	prefix string
}

func runSim(t *testing.T, url string, cfg Config) runResult {
	t.Helper()
	prefix := "smtest/" + testenv.RandomID(6)
	cfg.Broker = url
	cfg.Topic = prefix + "/plant/{site}/{line}/{asset}/{sensor}"
	rec := record(t, url, prefix+"/#")
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sum, err := sim.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.wait(int(sum.Acked), 30*time.Second)
	return runResult{sum: sum, got: rec.bySensor(prefix), prefix: prefix}
}

var testStart = time.Date(2026, 11, 26, 9, 59, 0, 0, time.UTC)

func schedule(t *testing.T, specs ...string) []FaultSpec {
	t.Helper()
	var out []FaultSpec
	for _, s := range specs {
		f, err := ParseFault(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// A run with --duration publishes exactly duration·rate samples of every
// sensor (minus dropouts); a QoS 1 subscriber receives exactly the
// acknowledged count; every payload is the JSON reading the example site
// config maps; the ground truth lists the injected faults.
func TestRunPublishesExactlyAndWritesTruth(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, "")
	cfg := Config{
		Site: "riverside", Line: "line1", Assets: 2, Rate: 20, QoS: 1, Duration: 3 * time.Second,
		Start: testStart, Seed: 5, Fast: true, Faults: FaultsSchedule,
		Schedule: schedule(t, "pump1:bearing@1s+1s", "pump2/flow:dropout@1s+500ms", "pump2/vib_x:spike@2s"),
	}
	res := runSim(t, m.URL, cfg)
	sum := res.sum
	const ticks, sensors, dropped = 60, 14, 10
	if sum.Samples != ticks || sum.Sensors != sensors || sum.Dropout != dropped {
		t.Errorf("samples %d, sensors %d, dropout %d; want %d, %d, %d", sum.Samples, sum.Sensors, sum.Dropout, ticks, sensors, dropped)
	}
	if want := int64(ticks*sensors - dropped); sum.Published != want || sum.Acked != want || sum.Failed != 0 || sum.Unacked != 0 {
		t.Errorf("published %d, acked %d, failed %d, unacked %d; want %d acked of %d", sum.Published, sum.Acked, sum.Failed, sum.Unacked, want, want)
	}
	received := 0
	gotPer := map[string]int64{}
	for sensor, payloads := range res.got {
		received += len(payloads)
		gotPer[sensor] = int64(len(payloads))
	}
	if int64(received) != sum.Acked {
		t.Errorf("subscriber received %d, summary says %d acknowledged", received, sum.Acked)
	}
	if diff := cmp.Diff(sum.PerSensor, gotPer); diff != "" {
		t.Errorf("per sensor: summary (-) vs received (+):\n%s", diff)
	}
	if gotPer["riverside/line1/pump2/flow"] != ticks-dropped {
		t.Errorf("pump2/flow got %d readings, want %d (dropout withholds %d)", gotPer["riverside/line1/pump2/flow"], ticks-dropped, dropped)
	}

	step := 50 * time.Millisecond
	for sensor, payloads := range res.got {
		seen := map[int64]bool{}
		for _, p := range payloads {
			var r map[string]any
			dec := json.NewDecoder(strings.NewReader(p))
			dec.UseNumber()
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("%s: payload %q is not JSON: %v", sensor, p, err)
			}
			if len(r) != 3 || r["q"] != "good" {
				t.Fatalf("%s: payload %q, want exactly v, ts and q=good", sensor, p)
			}
			if _, err := r["v"].(json.Number).Float64(); err != nil {
				t.Fatalf("%s: value in %q: %v", sensor, p, err)
			}
			ms, err := r["ts"].(json.Number).Int64()
			if err != nil {
				t.Fatalf("%s: ts in %q: %v", sensor, p, err)
			}
			ts := time.UnixMilli(ms).UTC()
			if off := ts.Sub(testStart); off < 0 || off >= 3*time.Second || off%step != 0 || seen[ms] {
				t.Fatalf("%s: ts %s is not a fresh sample time of the run", sensor, ts)
			}
			seen[ms] = true
		}
	}

	at := func(d time.Duration) time.Time { return testStart.Add(d) }
	want := []Truth{
		{Site: "riverside", Line: "line1", Asset: "pump1", Sensors: []string{"riverside/line1/pump1/vib_x", "riverside/line1/pump1/bearing_de_temp"}, Kind: "bearing_wear", Anomalous: true, Start: at(time.Second), End: at(2 * time.Second), Magnitude: 8},
		{Site: "riverside", Line: "line1", Asset: "pump2", Sensors: []string{"riverside/line1/pump2/flow"}, Kind: "dropout", Anomalous: false, Start: at(time.Second), End: at(1500 * time.Millisecond)},
		{Site: "riverside", Line: "line1", Asset: "pump2", Sensors: []string{"riverside/line1/pump2/vib_x"}, Kind: "spike", Anomalous: true, Start: at(2 * time.Second), End: at(2*time.Second + step), Magnitude: 8},
	}
	if diff := cmp.Diff(want, sum.Faults); diff != "" {
		t.Errorf("ground truth (-want +got):\n%s", diff)
	}
	var buf bytes.Buffer
	if err := WriteTruth(&buf, sum.Faults, true); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 1+4 {
		t.Errorf("CSV truth has %d lines, want a header and 4 sensor rows:\n%s", lines, buf.String())
	}
}

// The same seed and start give the same readings; a fault changes only
// the samples it covers (the clean signal is not shifted by it).
func TestRunIsDeterministicBySeed(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, "")
	cfg := Config{
		Assets: 2, Rate: 10, QoS: 1, Duration: 2 * time.Second, Start: testStart, Seed: 11, Fast: true,
		Faults: FaultsSchedule, Schedule: schedule(t, "pump2/pressure_discharge:step@1s+500ms*5"),
	}
	a := runSim(t, m.URL, cfg)
	b := runSim(t, m.URL, cfg)
	if diff := cmp.Diff(a.got, b.got); diff != "" {
		t.Errorf("same seed, different readings (-first +second):\n%s", diff)
	}
	clean := cfg
	clean.Faults = FaultsNone
	c := runSim(t, m.URL, clean)
	for sensor, payloads := range a.got {
		cp := c.got[sensor]
		if len(cp) != len(payloads) {
			t.Fatalf("%s: %d readings with the fault, %d without", sensor, len(payloads), len(cp))
		}
		diffs := 0
		for i := range payloads {
			if payloads[i] != cp[i] {
				diffs++
			}
		}
		want := 0
		if sensor == "riverside/line1/pump2/pressure_discharge" {
			want = 5
		}
		if diffs != want {
			t.Errorf("%s: %d readings differ from the fault-free run, want %d", sensor, diffs, want)
		}
	}
	other := cfg
	other.Seed = 12
	d := runSim(t, m.URL, other)
	if cmp.Equal(a.got, d.got) {
		t.Error("seeds 11 and 12 gave the same readings")
	}
}

// Random mode plans the first fault within 90 s, also for a short run.
func TestRandomFirstFaultComesEarly(t *testing.T) {
	t.Parallel()
	sim, err := New(Config{Broker: "tcp://unused:1", Assets: 20, Rate: 1, Duration: 2 * time.Minute, Start: testStart, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	truth := sim.Truth(-1)
	if len(truth) != 1 {
		t.Fatalf("2-minute random run plans %d faults, want the early one only: %+v", len(truth), truth)
	}
	if off := truth[0].Start.Sub(testStart); off > 90*time.Second {
		t.Errorf("first fault at +%s, want within 90 s", off)
	}
}

// Cancelling the context (SIGINT/SIGTERM) stops the run between samples;
// everything published by then is acknowledged and received.
func TestRunStopsCleanlyOnCancel(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, "")
	prefix := "smtest/" + testenv.RandomID(6)
	rec := record(t, m.URL, prefix+"/#")
	sim, err := New(Config{Broker: m.URL, Topic: prefix + "/{site}/{line}/{asset}/{sensor}", Assets: 3, Rate: 50, QoS: 1, Seed: 1, Faults: FaultsNone})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	sum, err := sim.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Samples == 0 || sum.Published != sum.Samples*21 || sum.Acked != sum.Published || sum.Unacked != 0 {
		t.Fatalf("summary after cancel: samples %d, published %d, acked %d, unacked %d", sum.Samples, sum.Published, sum.Acked, sum.Unacked)
	}
	rec.wait(int(sum.Acked), 10*time.Second)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if int64(rec.n) != sum.Acked {
		t.Errorf("received %d, acknowledged %d", rec.n, sum.Acked)
	}
}

// The broker restarts in the middle of a run: the simulator reconnects and
// resends, and every acknowledged reading reaches a persistent subscriber
// (duplicates from QoS 1 redelivery are allowed, losses are not).
func TestRunSurvivesBrokerRestart(t *testing.T) {
	t.Parallel()
	// testenv keeps the broker's persistence file writable (also as root),
	// so sessions survive the restart.
	m := testenv.StartMosquitto(t, "")
	prefix := "smtest/" + testenv.RandomID(6)
	r := &recorder{msgs: map[string][]string{}}
	o := paho.NewClientOptions().AddBroker(m.URL).SetClientID("rec-" + testenv.RandomID(6)).SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(paho.Client) { t.Logf("%s subscriber connected", time.Now().Format("15:04:05.000")) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			t.Logf("%s subscriber lost: %v", time.Now().Format("15:04:05.000"), err)
		}).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
			r.mu.Lock()
			r.msgs[msg.Topic()] = append(r.msgs[msg.Topic()], string(msg.Payload()))
			r.n++
			r.mu.Unlock()
		})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect subscriber: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Subscribe(prefix+"/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	sim, err := New(Config{Broker: m.URL, Topic: prefix + "/{site}/{line}/{asset}/{sensor}", Assets: 2, Rate: 50, QoS: 1,
		Duration: 3 * time.Second, Seed: 2, Faults: FaultsNone, Start: testStart})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(time.Second)
		t.Logf("%s stop", time.Now().Format("15:04:05.000"))
		m.Stop()
		time.Sleep(500 * time.Millisecond)
		m.Start()
		t.Logf("%s started", time.Now().Format("15:04:05.000"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sum, err := sim.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(150 * 14); sum.Published != want || sum.Acked != want {
		t.Fatalf("published %d, acked %d (failed %d, unacked %d), want %d", sum.Published, sum.Acked, sum.Failed, sum.Unacked, want)
	}
	deadline := time.Now().Add(20 * time.Second)
	distinct := 0
	for time.Now().Before(deadline) {
		r.mu.Lock()
		seen := map[string]bool{}
		for topic, ps := range r.msgs {
			for _, p := range ps {
				seen[topic+" "+p] = true
			}
		}
		distinct = len(seen)
		r.mu.Unlock()
		if int64(distinct) >= sum.Acked {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if int64(distinct) != sum.Acked {
		t.Errorf("subscriber has %d distinct readings, %d were acknowledged", distinct, sum.Acked)
		log, _ := os.ReadFile(filepath.Join(m.Dir, "mosquitto.log"))
		t.Logf("mosquitto log:\n%s", log)
	}
}

// Stopping while the broker is away (the window full of unacknowledged
// publishes) returns promptly after the drain time and reports what was
// not acknowledged.
func TestRunStopsWhileBrokerIsDown(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, "")
	sim, err := New(Config{Broker: m.URL, Topic: "smtest/" + testenv.RandomID(6) + "/{asset}/{sensor}", Assets: 1, Rate: 1000,
		QoS: 1, Window: 50, Fast: true, Faults: FaultsNone, Drain: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(300 * time.Millisecond)
		m.Stop()
		time.Sleep(500 * time.Millisecond)
		cancel()
	}()
	done := make(chan Summary, 1)
	go func() {
		sum, _ := sim.Run(ctx, nil)
		done <- sum
	}()
	select {
	case sum := <-done:
		if sum.Published == 0 || sum.Acked+sum.Failed+sum.Unacked != sum.Published || sum.Acked == sum.Published {
			t.Errorf("published %d, acked %d, failed %d, unacked %d", sum.Published, sum.Acked, sum.Failed, sum.Unacked)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel while the broker was down")
	}
}
