//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// volumes are the sizes of one run.
type volumes struct {
	quick         bool
	singleMsgs    int // edge ingest, one reading per message
	edgeSensors   int
	batchMsgs     int // edge ingest, batched
	perMsg        int
	steadyFor     time.Duration // edge sensors at 1 Hz, collector up, for RSS
	e2eMsgs       int           // edge end to end, sustained
	e2eLatencyFor time.Duration
	collBatches1  int // collector ingest, 1 client, 1,000-reading batches
	collBatches50 int // per edge, 50 edges
	drainN        int
	liveRate      float64
	microTime     string
}

func volumesFor(t *testing.T) volumes {
	quick := testing.Short() || os.Getenv("BENCH_QUICK") != ""
	v := volumes{singleMsgs: 200_000, edgeSensors: 20_000, batchMsgs: 5_000, perMsg: 100,
		e2eMsgs: 200_000, steadyFor: 60 * time.Second, e2eLatencyFor: 20 * time.Second, collBatches1: 200, collBatches50: 8,
		drainN: 5_000_000, liveRate: 2000, microTime: "1s"}
	if quick {
		v = volumes{quick: true, singleMsgs: 40_000, edgeSensors: 20_000, batchMsgs: 3_000, perMsg: 100,
			e2eMsgs: 40_000, steadyFor: 10 * time.Second, e2eLatencyFor: 6 * time.Second, collBatches1: 40, collBatches50: 2,
			drainN: 100_000, liveRate: 1000, microTime: "100ms"}
	}
	if s := os.Getenv("BENCH_DRAIN_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("BENCH_DRAIN_N=%q: want a positive number of readings", s)
		}
		v.drainN = n
	}
	return v
}

// row is one line of the table.
type row struct {
	stage, what     string
	figure          string
	baseline, ratio string
	goal            string
}

// report collects the rows as the stages finish.
type report struct{ rows []row }

func (r *report) add(x row) { r.rows = append(r.rows, x) }

func (r *report) markdown(v volumes, took time.Duration) string {
	var b strings.Builder
	host, _ := os.Hostname()
	mode := "full"
	if v.quick {
		mode = "quick (BENCH_QUICK)"
	}
	fmt.Fprintf(&b, "make bench, %s run, %s, %d CPUs, %s, %s, took %s\n\n", mode, time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		runtime.NumCPU(), runtime.Version(), host, took.Round(time.Second))
	b.WriteString("| stage | what | figure | baseline (same run) | ratio | goal |\n|---|---|---:|---:|---:|---|\n")
	for _, x := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", x.stage, x.what, x.figure, x.baseline, x.ratio, x.goal)
	}
	return b.String()
}

func perSec(v float64) string {
	switch {
	case math.IsInf(v, 0) || math.IsNaN(v):
		return "n/a"
	case v >= 10_000:
		return fmt.Sprintf("%.0fk/s", v/1000)
	default:
		return fmt.Sprintf("%.0f/s", v)
	}
}

func ratio(a, b float64) string {
	if b <= 0 || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return "n/a"
	}
	return fmt.Sprintf("**%.2f**", a/b)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

// TestBench runs every stage one after another (in parallel they would
// measure each other on a small machine) and prints the table.
func TestBench(t *testing.T) {
	began := time.Now()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	v := volumesFor(t)
	bins := findBinaries(t, root)
	rep := &report{}
	stages := []struct {
		name string
		run  func(*testing.T, binaries, volumes, *report)
	}{
		{"edge-ingest", edgeIngest},
		{"edge-footprint", edgeFootprint},
		{"edge-e2e", edgeEndToEnd},
		{"collector-ingest", collectorIngest},
		{"collector-overload", collectorOverload},
		{"backlog-drain", backlogDrain},
	}
	if os.Getenv("BENCH_MICRO") != "0" {
		stages = append(stages, struct {
			name string
			run  func(*testing.T, binaries, volumes, *report)
		}{"micro", func(t *testing.T, _ binaries, v volumes, r *report) { micro(t, root, v, r) }})
	}
	for _, s := range stages {
		t.Run(s.name, func(t *testing.T) {
			st := time.Now()
			s.run(t, bins, v, rep)
			t.Logf("%s took %s", s.name, time.Since(st).Round(time.Second))
		})
	}
	out := rep.markdown(v, time.Since(began))
	fmt.Printf("\n%s\n", out)
	if f := os.Getenv("BENCH_OUT"); f != "" {
		if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
			t.Errorf("write BENCH_OUT: %v", err)
		}
	}
}

// bareSubscriber is the baseline: a paho client with a persistent session
// that only counts what it receives (paho acknowledges a QoS 1 message
// after the handler returns).
type bareSubscriber struct {
	url             string
	decode          bool // also json.Unmarshal each payload (the batched baseline)
	decodeErrors    atomic.Int64
	received        atomic.Int64
	firstAt, lastAt atomic.Int64 // Unix ns of the first and the latest message
	client          mqtt.Client
}

func (b *bareSubscriber) connect(t *testing.T) {
	t.Helper()
	b.received.Store(0)
	b.client = connectMQTT(t, b.url, "bench-bare", false, func(_ mqtt.Client, m mqtt.Message) {
		if b.decode {
			var p struct {
				TS    int64 `json:"ts"`
				Items []struct {
					S string  `json:"s"`
					V float64 `json:"v"`
				} `json:"items"`
			}
			if json.Unmarshal(m.Payload(), &p) != nil || len(p.Items) == 0 {
				b.decodeErrors.Add(1)
			}
		}
		now := time.Now().UnixNano()
		if b.received.Add(1) == 1 {
			b.firstAt.Store(now)
		}
		b.lastAt.Store(now)
	})
}

// rate is messages/s from since (before connecting) to the last message.
func (b *bareSubscriber) rate(since time.Time) float64 {
	d := time.Duration(b.lastAt.Load() - since.UnixNano())
	if d <= 0 {
		return math.Inf(1)
	}
	return float64(b.received.Load()) / d.Seconds()
}

// edgeIngest: a private no-drop Mosquitto holds a backlog for two
// persistent sessions, the bare subscriber's and sm-edge's; each drains
// it alone (the other disconnected) and the rate is measured from its
// first received message to its last. sm-edge's collector is unreachable
// (a closed port), so every reading ends in the durable queue and the
// forwarder takes no CPU: this is broker → decode → map → score → group
// commit.
func edgeIngest(t *testing.T, bins binaries, v volumes, rep *report) {
	dir := t.TempDir()
	broker := testenv.StartMosquitto(t, "")
	nowhere := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	e, startup := startEdge(t, dir, bins.edge, broker.URL, nowhere, writeToken(t, dir, "unused-token-unused-token"))
	e.p.Stop() // its session keeps the subscriptions
	bare := &bareSubscriber{url: broker.URL}
	// fresh gives the bare subscriber a new persistent session holding
	// only filter, so it receives exactly the next backlog.
	fresh := func(filter string) {
		c := connectMQTT(t, broker.URL, "bench-bare", true, nil)
		c.Disconnect(100)
		bare.connect(t)
		tok := bare.client.Subscribe(filter, 1, nil)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", filter, tok.Error())
		}
		bare.client.Disconnect(100)
	}

	var footprint []row
	measure := func(l *load, filter, what, goal string, absGoal float64) {
		fresh(filter)
		pt := time.Now()
		l.publish(t.Context(), t, broker.URL)
		t.Logf("published %d messages in %s (%s)", l.msgs, time.Since(pt).Round(time.Millisecond), perSec(float64(l.msgs)/time.Since(pt).Seconds()))
		total := float64(l.msgs * l.perMsg)
		bare.decode = l.perMsg > 1
		connectAt := time.Now()
		bare.connect(t)
		testenv.WaitFor(t, 5*time.Minute, "the bare subscriber to receive the backlog", func() bool { return bare.received.Load() >= int64(l.msgs) })
		bareRate := bare.rate(connectAt) * float64(l.perMsg)
		baseline := perSec(bareRate) + " (bare paho)"
		if bare.decode {
			baseline = perSec(bareRate) + " (bare paho + encoding/json)"
			if n := bare.decodeErrors.Load(); n > 0 {
				t.Errorf("bare subscriber: %d payloads did not decode", n)
			}
		}
		bare.client.Disconnect(100)
		// From process start (start-up is some 15 ms) to the sample that
		// sees every reading committed: sm-edge takes the backlog while
		// it starts, before /readyz first answers.
		e.p.Start()
		var doneAt time.Time
		testenv.WaitFor(t, 5*time.Minute, "sm-edge to commit the backlog", func() bool {
			if e.p.Exited() {
				t.Fatalf("sm-edge exited:\n%s", testenv.Tail(e.p.LogPath, 30))
			}
			doneAt = time.Now()
			return e.committed() >= total
		})
		edgeRate := total / doneAt.Sub(e.p.Started()).Seconds()
		sr, sw := syscallsOf(e.p)
		t.Logf("sm-edge: %s CPU for %.0f readings: %.2f µs/reading; %.2f read and %.2f write system calls per message", cpuOf(e.p), total, float64(cpuOf(e.p).Microseconds())/total, float64(sr)/float64(l.msgs), float64(sw)/float64(l.msgs))
		if l.perMsg == 1 {
			// The steady-state figure (collector up) is edgeFootprint's.
			footprint = append(footprint, row{stage: "footprint", what: fmt.Sprintf("sm-edge memory at %d sensors, right after draining the %d-message backlog (the broker pushes it all: in-flight window unlimited; the subscriber stops reading the socket while its queue is full)", v.edgeSensors, l.msgs),
				figure: memoryOf(e.p).String(), goal: "≤ 64 MiB RSS"})
		}
		e.p.Stop()
		g := goal
		if absGoal > 0 {
			g = strings.TrimPrefix(g+fmt.Sprintf(" and ≥ %s", perSec(absGoal)), " and ")
		}
		rep.add(row{stage: "edge ingest", what: what, figure: perSec(edgeRate) + " readings", baseline: baseline,
			ratio: ratio(edgeRate, bareRate), goal: g})
	}
	measure(singleLoad("p", v.singleMsgs, v.edgeSensors), "smm/#", fmt.Sprintf("QoS 1, 1 reading/message, %d messages backlog, %d sensors", v.singleMsgs, v.edgeSensors),
		"≥ 0.8 × bare", 0)
	measure(batchLoad("b", v.batchMsgs, v.perMsg, 20), "smb/#", fmt.Sprintf("QoS 1, %d readings/message (JSON items), %d messages", v.perMsg, v.batchMsgs),
		"", 300_000)

	for _, r := range footprint {
		rep.add(r)
	}
	if st, err := os.Stat(bins.edge); err == nil {
		rep.add(row{stage: "footprint", what: "sm-edge binary (static, stripped)", figure: mib(st.Size()), goal: "≤ 20 MB"})
	}
	rep.add(row{stage: "footprint", what: "sm-edge start-up to /readyz (fresh data dir, broker up)", figure: ms(startup)})
}
