//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Sizes of the collector overload stage.
const (
	ovConcurrent     = 16               // closed-loop posters of the 1× phase
	ovClientTimeout  = 30 * time.Second // per request, as an edge's uplink timeout
	ovMaxOutstanding = 20_000           // a guard for the load generator, never a pacing
	ovEdgeRate       = 1000             // readings/s of the real sm-edge, through every phase
	ovSampleEvery    = 250 * time.Millisecond
)

// ovEdge is one registered edge of the stage.
type ovEdge struct{ id, token string }

// ovPhase is one time range of batches: batch k of edge e holds its 100
// sensors at 10 instants base + k·10 ms + 0…9 ms, so every stored row
// names the batch it came from.
type ovPhase struct {
	name string
	num  int // distinguishes batch ids and sequence numbers
	base time.Time

	mu    sync.Mutex
	acked []map[int]bool // per edge: batches answered 2xx
	extra int            // 2xx answers for a batch already acknowledged (re-sends after a lost answer)
}

func newPhase(name string, num, edges int, base time.Time) *ovPhase {
	p := &ovPhase{name: name, num: num, base: base, acked: make([]map[int]bool, edges)}
	for i := range p.acked {
		p.acked[i] = map[int]bool{}
	}
	return p
}

func (p *ovPhase) ack(e, k int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.acked[e][k] {
		p.extra++
	}
	p.acked[e][k] = true
}

// batch encodes batch k of edge e.
func (p *ovPhase) batch(t *testing.T, e ovEdge, k int) []byte {
	t.Helper()
	var b wire.Batch
	b.EdgeID, b.BatchID = e.id, fmt.Sprintf("%s-p%d-%d", e.id, p.num, k)
	seq := uint64(p.num)*1_000_000_000 + uint64(k)*1000 + 1
	b.FirstSeq = seq
	for r := range 1000 {
		b.Readings = append(b.Readings, wire.Reading{Sensor: fmt.Sprintf("%s/l/a/s%02d", e.id, r%100),
			Time: p.base.Add(time.Duration(k*10+r/100) * time.Millisecond).UnixNano(), Value: 12 + float64(r%7)/10, Seq: seq})
		seq++
	}
	b.LastSeq = seq - 1
	body, err := wire.EncodeBatch(nil, &b)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// answers counts the answers of one phase by class.
type answers struct {
	mu                          sync.Mutex
	ok, r429, r503, other, errs int
	noRetryAfter, rejected      int
	samples                     []string // the first few unexpected answers
	okLat, ovLat                []time.Duration
}

func (a *answers) note(s string) {
	if len(a.samples) < 5 {
		a.samples = append(a.samples, s)
	}
}

// record classifies one answer; it returns whether it was 2xx.
func (a *answers) record(code int, hdr http.Header, body []byte, err error, took time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err != nil:
		a.errs++
		a.note(err.Error())
		return false
	case code >= 200 && code < 300:
		a.ok++
		a.okLat = append(a.okLat, took)
		var r wire.IngestResponse
		if json.Unmarshal(body, &r) != nil || r.Rejected != 0 || r.Accepted+r.Duplicate != 1000 {
			a.rejected++
			a.note(fmt.Sprintf("%d %.200s", code, body))
		}
		return true
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		if code == http.StatusTooManyRequests {
			a.r429++
		} else {
			a.r503++
		}
		a.ovLat = append(a.ovLat, took)
		if hdr.Get("Retry-After") == "" {
			a.noRetryAfter++
		}
	default:
		a.other++
		a.note(fmt.Sprintf("%d %.200s", code, body))
	}
	return false
}

func (a *answers) String() string {
	s := fmt.Sprintf("2xx %d, 429 %d, 503 %d, other %d, transport errors/timeouts %d", a.ok, a.r429, a.r503, a.other, a.errs)
	if a.r429+a.r503 > 0 {
		if a.noRetryAfter == 0 {
			s += "; every 429/503 had Retry-After"
		} else {
			s += fmt.Sprintf("; %d 429/503 without Retry-After", a.noRetryAfter)
		}
	}
	return s
}

func (a *answers) check(t *testing.T, phase string) {
	t.Helper()
	if a.other > 0 || a.errs > 0 || a.noRetryAfter > 0 || a.rejected > 0 {
		t.Errorf("%s: %s; %d 2xx with rejections or wrong counts; first: %q", phase, a, a.rejected, a.samples)
	}
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// ovPost sends one batch and returns the answer.
func ovPost(ctx context.Context, client *http.Client, base, token string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/ingest", bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", wire.ContentType)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// memSample is the collector's memory at one instant.
type memSample struct {
	at       time.Duration // since the sampler started
	phase    int           // 1 (1×), 2 (2×), 3 (1× after), 4 (the sm-edge drains)
	m        mem
	edge     mem     // the real sm-edge's
	queue    float64 // records in the real sm-edge's queue, -1 unknown
	heap     float64 // the collector's go_memstats_heap_inuse_bytes, -1 unknown
	routines float64 // the collector's goroutines, -1 unknown
	accepted int64   // readings answered 2xx so far
}

// registerEdges registers n edges with the collector's CLI, four at a time.
func registerEdges(t *testing.T, c *collector, n int) []ovEdge {
	t.Helper()
	edges := make([]ovEdge, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		edges[i].id = fmt.Sprintf("ov%03d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, c.bin, "edge", "register", "--name", edges[i].id)
			cmd.Env = append(cmd.Environ(), c.env...)
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("register %s: %w: %s", edges[i].id, err, stderr.String())
			}
			edges[i].token = strings.TrimSpace(out.String())
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return edges
}

// collectorOverload: the collector's sustained accepted rate with many
// registered edges (closed loop, 1×), then twice that rate (BENCH_OVERLOAD)
// offered open loop — paced arrivals that do not wait for answers, as
// edges with their own queues would send — then 1× again, while its memory
// is sampled. Refused batches (429, 503, transport errors) go back to their
// edge's queue and are re-sent at the edge's next arrival, so retries are
// part of the offered load and dedup is exercised. A real sm-edge forwards
// its own readings through the overload. At the end every batch answered
// 2xx must be in readings, exactly once, and every reading the sm-edge
// was given must be stored.
//
// The database's time per transaction grows as the readings table grows
// (and with the neighbours' load), so the 1× phase after the overload and
// the writers' busy time tell overload from drift.
func collectorOverload(t *testing.T, bins binaries, v volumes, rep *report) {
	nEdges, capFor, overFor := 150, 10*time.Second, 30*time.Second
	if v.quick {
		nEdges, capFor, overFor = 100, 4*time.Second, 8*time.Second
	}
	factor := 2.0
	if f := os.Getenv("BENCH_OVERLOAD"); f != "" {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil || x <= 0 {
			t.Fatalf("BENCH_OVERLOAD=%q: want a positive factor of the sustained rate", f)
		}
		factor = x
	}
	over := fmt.Sprintf("%g×", factor)
	if d := os.Getenv("BENCH_OVERLOAD_FOR"); d != "" {
		x, err := time.ParseDuration(d)
		if err != nil || x < time.Second {
			t.Fatalf("BENCH_OVERLOAD_FOR=%q: want a duration of at least 1s", d)
		}
		overFor = x
	}
	dir := t.TempDir()
	coll := startCollector(t, dir, bins.collector)
	defer coll.p.Stop()
	edges := registerEdges(t, coll, nEdges)
	// A real sm-edge forwards its own plant's readings (sensors re/…)
	// through the overload, with its backoff and its durable queue.
	broker := testenv.StartMosquitto(t, "")
	realEdge, _ := startEdge(t, dir, bins.edge, broker.URL, coll.base, writeToken(t, dir, coll.register(t, "bench")))
	defer realEdge.p.Stop()
	client := &http.Client{Timeout: ovClientTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	defer client.CloseIdleConnections()
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Second)
	warm := newPhase("warm-up", 0, nEdges, now.Add(-55*time.Minute))
	one := newPhase("1×", 1, nEdges, now.Add(-50*time.Minute))
	two := newPhase("2×", 2, nEdges, now.Add(-25*time.Minute))
	after := newPhase("1× after", 3, nEdges, now.Add(-40*time.Minute))

	// Warm-up: one batch per edge registers its 100 sensors.
	var wa answers
	var wg sync.WaitGroup
	sem := make(chan struct{}, ovConcurrent)
	for e := range edges {
		body := warm.batch(t, edges[e], 0)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for range 100 {
				st := time.Now()
				code, hdr, b, err := ovPost(ctx, client, coll.base, edges[e].token, body)
				if wa.record(code, hdr, b, err, time.Since(st)) {
					warm.ack(e, 0)
					return
				}
				if err != nil || (code != 503 && code != 429) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	wa.check(t, "warm-up")

	// Memory, every 250 ms through both phases.
	var (
		samplesMu sync.Mutex
		samples   []memSample
		curPhase  atomic.Int32
		accepted  atomic.Int64 // readings answered 2xx in both phases
	)
	curPhase.Store(1)
	samplerDone := make(chan struct{})
	var samplerWG sync.WaitGroup
	samplerStart := time.Now()
	samplerWG.Go(func() {
		tick := time.NewTicker(ovSampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-samplerDone:
				return
			case <-tick.C:
				m, em, q, h := memoryOf(coll.p), memoryOf(realEdge.p), realEdge.queueRecords(), metric(coll.metrics, "go_memstats_heap_inuse_bytes", "")
				g := metric(coll.metrics, "go_goroutines", "")
				samplesMu.Lock()
				samples = append(samples, memSample{at: time.Since(samplerStart), phase: int(curPhase.Load()), m: m, edge: em, queue: q, heap: h, routines: g, accepted: accepted.Load()})
				samplesMu.Unlock()
			}
		}
	})
	stopSampler := func() { close(samplerDone); samplerWG.Wait() }

	// 1×: closed loop, measured before the overload and again after it.
	// The real sm-edge's plant publishes through all three phases, so it
	// loads the baseline as much as the overload.
	edgeStop := make(chan struct{})
	var edgeMsgs int
	var edgeWG sync.WaitGroup
	edgeWG.Go(func() { edgeMsgs = pacedPublish(ctx, t, broker.URL, ovEdgeRate, edgeStop) })
	db0, t1 := dbTimes(coll), time.Now()
	rate1, a1 := closedLoop(t, client, coll.base, edges, one, capFor, &accepted)
	db1, took1 := dbTimes(coll), time.Since(t1)
	a1.check(t, "1×")
	t.Logf("1×: %s readings/s; %s; %s", perSec(rate1), a1, db1.sub(db0))
	if rate1 <= 0 {
		t.Fatalf("the collector accepted nothing in the 1× phase: %s", a1)
	}

	// 2×: open loop. Arrival i is due at t2 + i/rate and goes to edge
	// i mod N, which sends the oldest batch it had refused or else its next
	// fresh one; nothing waits for an answer.
	offered := factor * rate1 / 1000 // batches/s
	interval := time.Duration(float64(time.Second) / offered)
	arrivals := int(overFor / interval)
	perEdge2 := arrivals/nEdges + 1
	bodies2 := make([][][]byte, nEdges)
	for e := range edges {
		bodies2[e] = make([][]byte, perEdge2)
		for k := range perEdge2 {
			bodies2[e][k] = two.batch(t, edges[e], k)
		}
	}
	type edgeQueue struct {
		fresh   int
		refused []int
	}
	var (
		qmu         sync.Mutex
		queues      = make([]edgeQueue, nEdges)
		a2          answers
		outstanding atomic.Int64
		peakOut     int64
		resends     int
		skipped     int
		maxLag      time.Duration
		okInWindow  atomic.Int64
	)
	curPhase.Store(2)
	t.Logf("%s phase: offering %.0f batches/s for %s (sm-collector pid %d)", over, offered, overFor, coll.p.PID())
	t2 := time.Now()
	end2 := t2.Add(overFor)
	for i := range arrivals {
		due := t2.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else {
			maxLag = max(maxLag, -d)
		}
		e := i % nEdges
		qmu.Lock()
		q := &queues[e]
		var k int
		switch {
		case len(q.refused) > 0:
			k, q.refused = q.refused[0], q.refused[1:]
			resends++
		case q.fresh < perEdge2:
			k = q.fresh
			q.fresh++
		default:
			k = -1
		}
		qmu.Unlock()
		if k < 0 {
			continue // this edge has nothing left to send
		}
		if n := outstanding.Load(); n >= ovMaxOutstanding {
			qmu.Lock()
			q.refused = append(q.refused, k)
			skipped++
			qmu.Unlock()
			continue
		}
		peakOut = max(peakOut, outstanding.Add(1))
		wg.Go(func() {
			defer outstanding.Add(-1)
			st := time.Now()
			code, hdr, b, err := ovPost(ctx, client, coll.base, edges[e].token, bodies2[e][k])
			if a2.record(code, hdr, b, err, time.Since(st)) {
				two.ack(e, k)
				accepted.Add(1000)
				if time.Now().Before(end2) {
					okInWindow.Add(1000)
				}
				return
			}
			qmu.Lock()
			queues[e].refused = append(queues[e].refused, k)
			qmu.Unlock()
		})
	}
	sent := time.Since(t2)
	wg.Wait()
	drained := time.Since(t2)
	db2 := dbTimes(coll)
	bodies2 = nil
	a2.check(t, over)
	t.Logf("%s: %s", over, db2.sub(db1))

	// 1× again: does the collector recover, and how far did the baseline
	// drift (a bigger table, the neighbours' load)?
	curPhase.Store(3)
	t3 := time.Now()
	rate3, a3 := closedLoop(t, client, coll.base, edges, after, capFor, &accepted)
	db3, took3 := dbTimes(coll).sub(db2), time.Since(t3)
	a3.check(t, "1× after")
	t.Logf("1× after: %s readings/s; %s; %s", perSec(rate3), a3, db3)
	close(edgeStop)
	edgeWG.Wait()
	curPhase.Store(4)
	t4 := time.Now()
	if !testenv.Poll(2*time.Minute, 100*time.Millisecond, func() bool {
		return realEdge.forwarded() >= float64(edgeMsgs) && realEdge.queueRecords() == 0
	}) {
		t.Errorf("sm-edge forwarded %.0f of %d readings within 2 minutes after the last publish", realEdge.forwarded(), edgeMsgs)
	}
	edgeDrainedIn := time.Since(t4)
	edgeRetries := realEdge.metric("smartmaint_edge_forward_batches_total", `result="retry"`)
	edgeOK := realEdge.metric("smartmaint_edge_forward_batches_total", `result="ok"`)
	stopSampler()
	edgeStored := countRows(t, coll.dbURL, "re/")
	if edgeStored != edgeMsgs {
		t.Errorf("sm-edge: %d readings published, %d stored", edgeMsgs, edgeStored)
	}
	rate2 := float64(okInWindow.Load()) / overFor.Seconds()
	t.Logf("%s: offered %.0f batches/s (%d arrivals in %s, max scheduler lag %s, peak %d outstanding, %d re-sends, %d held back by the generator's guard); last answer after %s; %s",
		over, offered, arrivals, sent.Round(time.Millisecond), maxLag.Round(time.Millisecond), peakOut, resends, skipped, drained.Round(time.Millisecond), &a2)
	if skipped > 0 {
		t.Errorf("%s: %d arrivals held back because %d requests were outstanding: the load was not open loop", over, skipped, ovMaxOutstanding)
	}

	// Memory: peaks per phase, and the slope over the last half of the 2×
	// phase (least squares).
	var peak1, peak2, edgePeak1, edgePeak, edgePeakAnon int64
	var queuePeak float64
	heapPeak := map[int]float64{} // per phase
	var xs, ys, hs []float64
	lastHalf, p2end := t2.Sub(samplerStart)+overFor/2, end2.Sub(samplerStart)
	for _, s := range samples {
		heapPeak[s.phase] = max(heapPeak[s.phase], s.heap)
		if s.phase == 1 {
			edgePeak1 = max(edgePeak1, s.edge.rss)
		} else {
			edgePeak, edgePeakAnon, queuePeak = max(edgePeak, s.edge.rss), max(edgePeakAnon, s.edge.anon), max(queuePeak, s.queue)
		}
		if s.phase != 2 {
			if s.phase == 1 {
				peak1 = max(peak1, s.m.rss)
			}
			continue
		}
		peak2 = max(peak2, s.m.rss)
		if s.at >= lastHalf && s.at <= p2end {
			xs = append(xs, s.at.Seconds())
			ys = append(ys, float64(s.m.rss)/(1<<20))
			hs = append(hs, s.heap/(1<<20))
		}
	}
	slope, heapSlope := slopeOf(xs, ys)*60, slopeOf(xs, hs)*60 // MiB per minute
	var trace strings.Builder
	for i := 4; i < len(samples); i += 4 {
		s, p := samples[i], samples[i-4]
		fmt.Fprintf(&trace, " %d:%s/%.0f/%.0f/%.0f", s.phase, perSec(float64(s.accepted-p.accepted)/(s.at-p.at).Seconds()), float64(s.m.rss)/(1<<20), s.heap/(1<<20), s.routines)
	}
	t.Logf("per second (phase:accepted/RSS MiB/heap in use MiB/goroutines):%s", trace.String())
	final := memoryOf(coll.p)
	t.Logf("memory: %d samples; peak RSS 1× %s, %s %s; slope over the last half of %s %+.1f MiB/min; now %s", len(samples), mib(peak1), over, mib(peak2), over, slope, final)

	// Nothing acknowledged is lost, nothing stored twice.
	lost, stored, unacked, ackedReadings := verifyOverload(t, coll.dbURL, []*ovPhase{warm, one, two, after})
	if lost > 0 {
		t.Errorf("%d acknowledged readings are not in readings", lost)
	}

	stage := "collector overload"
	// The database's time per transaction drifts as the table grows
	// (shared buffers, checkpoints) and with the neighbours' load; the
	// writers' busy time (transactions in flight on average) shows whether
	// the collector keeps the database as busy under overload as at 1×.
	busy := func(c dbClock, d time.Duration) float64 { return c.write / d.Seconds() }
	busy1, busy2, busy3 := busy(db1.sub(db0), took1), busy(db2.sub(db1), drained), busy(db3, took3)
	rep.add(row{stage: stage, what: fmt.Sprintf("sustained accepted rate (1×), %d registered edges (100 sensors each), closed loop: %d posters, 1,000-reading batches, 503/429 retried after 20 ms, %s (%d 503/429; %s)",
		nEdges, ovConcurrent, capFor, a1.r429+a1.r503, db1.sub(db0)), figure: perSec(rate1) + " readings"})
	rep.add(row{stage: stage, what: fmt.Sprintf("accepted at %s offered open loop: %.0f batches/s over %d edges for %s (%d arrivals, %d of them re-sends of refused batches; scheduler lag ≤ %s, ≤ %d outstanding; %s)",
		over, offered, nEdges, overFor, arrivals, resends, maxLag.Round(time.Millisecond), peakOut, db2.sub(db1)),
		figure: perSec(rate2) + " readings", baseline: perSec(rate1) + " (1×)", ratio: ratio(rate2, rate1), goal: "≈ 1× (no collapse)"})
	rep.add(row{stage: stage, what: fmt.Sprintf("1× again right after the %s phase, same method (%d 503/429; %s)", over, a3.r429+a3.r503, db3),
		figure: perSec(rate3) + " readings", baseline: perSec(rate1) + " (1× before)", ratio: ratio(rate3, rate1), goal: "recovers"})
	rep.add(row{stage: stage, what: fmt.Sprintf("write transactions in flight on average at %s (1× after: %.2f)", over, busy3),
		figure: fmt.Sprintf("%.2f", busy2), baseline: fmt.Sprintf("%.2f (1×)", busy1), ratio: ratio(busy2, busy1), goal: "≈ 1: the database stays busy"})
	rep.add(row{stage: stage, what: fmt.Sprintf("answers at %s (client timeout %s)", over, ovClientTimeout), figure: a2.String(), goal: "other 0, errors 0; 429/503 with Retry-After"})
	rep.add(row{stage: stage, what: "answer time at " + over,
		figure: fmt.Sprintf("2xx p50 %s, p99 %s; 503/429 p50 %s, p99 %s, max %s", ms(pct(a2.okLat, .5)), ms(pct(a2.okLat, .99)),
			ms(pct(a2.ovLat, .5)), ms(pct(a2.ovLat, .99)), ms(pct(a2.ovLat, 1)))})
	rep.add(row{stage: stage, what: fmt.Sprintf("sm-collector peak RSS in the %s phase (slope over its last half: %+.1f MiB/min; VmHWM at the end %s)", over, slope, mib(final.hwm)),
		figure: mib(peak2), baseline: mib(peak1) + " (1×)", ratio: ratio(float64(peak2), float64(peak1)), goal: "bounded: plateau"})
	rep.add(row{stage: stage, what: fmt.Sprintf("sm-collector Go heap in use, peak in the %s phase (slope over its last half: %+.1f MiB/min; 1× after: peak %s)", over, heapSlope, mib(int64(heapPeak[3]))),
		figure: mib(int64(heapPeak[2])), baseline: mib(int64(heapPeak[1])) + " (1×)", ratio: ratio(heapPeak[2], heapPeak[1]), goal: "bounded: plateau"})
	rep.add(row{stage: stage, what: fmt.Sprintf("a real sm-edge whose plant publishes %d readings/s (100 sensors) through all phases: %.0f of its requests retried (503), %.0f accepted; its queue peaked at %.0f records from the %s phase on; all forwarded %s after the last publish; readings published → stored", ovEdgeRate, edgeRetries, edgeOK, queuePeak, over, edgeDrainedIn.Round(100*time.Millisecond)),
		figure: fmt.Sprintf("%d → %d", edgeMsgs, edgeStored), goal: "none lost"})
	rep.add(row{stage: stage, what: fmt.Sprintf("that sm-edge's peak RSS from the %s phase on (peak anonymous %s; the queue file is mapped)", over, mib(edgePeakAnon)),
		figure: mib(edgePeak), baseline: mib(edgePeak1) + " (1×)", ratio: ratio(float64(edgePeak), float64(edgePeak1)), goal: "bounded"})
	rep.add(row{stage: stage, what: fmt.Sprintf("acknowledged readings (2xx, all phases) missing from readings; %d stored, %d of them from batches never answered 2xx, %d repeated 2xx for re-sent batches",
		stored, unacked, two.extra+one.extra+warm.extra+after.extra), figure: fmt.Sprintf("%d of %d", lost, ackedReadings), goal: "0"})
}

// slopeOf is the least-squares slope of ys over xs.
func slopeOf(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// verifyOverload counts the stored rows of every batch of the phases and
// compares them with the batches answered 2xx: it returns the readings of
// acknowledged batches that are missing, the rows stored, the rows of
// batches never acknowledged, and the acknowledged readings.
func verifyOverload(t *testing.T, dbURL string, phases []*ovPhase) (lost, stored, unacked, acked int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, p := range phases {
		rows, err := conn.Query(ctx, `SELECT substring(s.id FROM 3 FOR 3)::int AS e,
				floor(extract(epoch FROM r.time - $1::timestamptz) * 100)::int AS k, count(*)
			FROM readings r JOIN sensors s ON s.num = r.sensor_id
			WHERE s.id LIKE 'ov%' AND r.time >= $1 AND r.time < $1::timestamptz + interval '4 minutes'
			GROUP BY 1, 2`, p.base)
		if err != nil {
			t.Fatalf("count rows: %v", err)
		}
		got := map[[2]int]int{}
		for rows.Next() {
			var e, k, n int
			if err := rows.Scan(&e, &k, &n); err != nil {
				t.Fatalf("count rows: %v", err)
			}
			got[[2]int{e, k}] = n
			stored += n
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("count rows: %v", err)
		}
		for e, ks := range p.acked {
			for k := range ks {
				acked += 1000
				n := got[[2]int{e, k}]
				if n > 1000 {
					t.Errorf("%s: batch %d of edge %d has %d rows (stored twice?)", p.name, k, e, n)
				}
				lost += max(0, 1000-n)
				delete(got, [2]int{e, k})
			}
		}
		for _, n := range got {
			unacked += n
		}
	}
	return lost, stored, unacked, acked
}

// closedLoop runs ovConcurrent posters over all edges in turn for d, each
// sending the next batch of p as soon as its previous one was answered; a
// 503/429 is retried after 20 ms. The batches are encoded beforehand, for
// up to 500 batches/s. It returns the accepted readings/s.
func closedLoop(t *testing.T, client *http.Client, base string, edges []ovEdge, p *ovPhase, d time.Duration, accepted *atomic.Int64) (float64, *answers) {
	t.Helper()
	ctx := t.Context()
	nEdges := len(edges)
	perEdge := int(d.Seconds()*500)/nEdges + 1
	bodies := make([][][]byte, nEdges)
	for e := range edges {
		bodies[e] = make([][]byte, perEdge)
		for k := range perEdge {
			bodies[e][k] = p.batch(t, edges[e], k)
		}
	}
	a := &answers{}
	var next, ok atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(d)
	for range ovConcurrent {
		wg.Go(func() {
			for time.Now().Before(end) {
				c := int(next.Add(1) - 1)
				e, k := c%nEdges, c/nEdges
				if k >= perEdge {
					return
				}
				for time.Now().Before(end.Add(ovClientTimeout)) {
					st := time.Now()
					code, hdr, b, err := ovPost(ctx, client, base, edges[e].token, bodies[e][k])
					if a.record(code, hdr, b, err, time.Since(st)) {
						p.ack(e, k)
						ok.Add(1000)
						accepted.Add(1000)
						break
					}
					if err != nil || (code != 503 && code != 429) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	return float64(ok.Load()) / time.Since(t0).Seconds(), a
}

// dbClock is the collector's cumulative time per batch: in its database
// transaction and in Ingest as a whole (admission wait, validation, write).
type dbClock struct{ write, writeN, batch, batchN float64 }

func dbTimes(c *collector) dbClock {
	m := c.metrics
	return dbClock{
		write: metric(m, "smartmaint_collector_db_write_seconds_sum", ""), writeN: metric(m, "smartmaint_collector_db_write_seconds_count", ""),
		batch: metric(m, "smartmaint_collector_ingest_batch_seconds_sum", ""), batchN: metric(m, "smartmaint_collector_ingest_batch_seconds_count", ""),
	}
}

func (a dbClock) sub(b dbClock) dbClock {
	return dbClock{a.write - b.write, a.writeN - b.writeN, a.batch - b.batch, a.batchN - b.batchN}
}

func (a dbClock) String() string {
	per := func(s, n float64) string {
		if n <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f ms", s/n*1000)
	}
	return fmt.Sprintf("collector: %.0f transactions, %s each; %.0f Ingest calls, %s each", a.writeN, per(a.write, a.writeN), a.batchN, per(a.batch, a.batchN))
}

// countRows counts the readings of the sensors whose id starts with prefix.
func countRows(t *testing.T, dbURL, prefix string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM readings r JOIN sensors s ON s.num = r.sensor_id WHERE s.id LIKE $1`, prefix+"%").Scan(&n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

// pacedPublish publishes one-reading messages (100 sensors, topics
// smm/re/…) at rate per second from one client until stop is closed,
// without waiting for each acknowledgement, so the pace holds however
// slow the broker answers; it returns the number published once every
// publish was acknowledged.
func pacedPublish(ctx context.Context, t *testing.T, url string, rate float64, stop <-chan struct{}) int {
	c := connectMQTT(t, url, fmt.Sprintf("bench-re-%d", time.Now().UnixNano()), true, nil)
	defer c.Disconnect(100)
	l := singleLoad("re", math.MaxInt, 100)
	var toks []mqtt.Token
	start := time.Now()
	last := int64(0)
	for n := 0; ; n++ {
		if d := time.Until(start.Add(time.Duration(float64(n) / rate * float64(time.Second)))); d > 0 {
			select {
			case <-stop:
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		select {
		case <-stop:
		case <-ctx.Done():
		default:
			us := max(time.Now().UnixMicro(), last+1)
			last = us
			toks = append(toks, c.Publish(l.topic(n), 1, false, l.payload(n, us)))
			continue
		}
		break
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
			t.Errorf("publish: %v", tok.Error())
			break
		}
	}
	return len(toks)
}
