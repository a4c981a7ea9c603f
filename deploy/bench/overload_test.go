//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Sizes of the collector overload stage.
const (
	ovConcurrent     = 16               // closed-loop posters of the 1× phase
	ovClientTimeout  = 30 * time.Second // per request, as an edge's uplink timeout
	ovMaxOutstanding = 20_000           // a guard for the load generator, never a pacing
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
	at    time.Duration // since the sampler started
	phase int           // 1 or 2
	m     mem
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
// registered edges (closed loop), then twice that rate offered open loop —
// paced arrivals that do not wait for answers, as edges with their own
// queues would send — while its memory is sampled. Refused batches (429,
// 503, transport errors) go back to their edge's queue and are re-sent at
// the edge's next arrival, so retries are part of the offered load and
// dedup is exercised. At the end every batch answered 2xx must be in
// readings, exactly once.
func collectorOverload(t *testing.T, bins binaries, v volumes, rep *report) {
	nEdges, capFor, overFor := 150, 10*time.Second, 30*time.Second
	if v.quick {
		nEdges, capFor, overFor = 100, 4*time.Second, 8*time.Second
	}
	dir := t.TempDir()
	coll := startCollector(t, dir, bins.collector)
	defer coll.p.Stop()
	edges := registerEdges(t, coll, nEdges)
	client := &http.Client{Timeout: ovClientTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	defer client.CloseIdleConnections()
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Second)
	warm := newPhase("warm-up", 0, nEdges, now.Add(-55*time.Minute))
	one := newPhase("1×", 1, nEdges, now.Add(-50*time.Minute))
	two := newPhase("2×", 2, nEdges, now.Add(-25*time.Minute))

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
				m := memoryOf(coll.p)
				samplesMu.Lock()
				samples = append(samples, memSample{at: time.Since(samplerStart), phase: int(curPhase.Load()), m: m})
				samplesMu.Unlock()
			}
		}
	})
	stopSampler := func() { close(samplerDone); samplerWG.Wait() }

	// 1×: closed loop, ovConcurrent posters over all edges in turn; a
	// 503/429 is retried after 20 ms. The batches are encoded beforehand,
	// for up to 500 batches/s.
	perEdge1 := int(capFor.Seconds()*500)/nEdges + 1
	bodies1 := make([][][]byte, nEdges)
	for e := range edges {
		bodies1[e] = make([][]byte, perEdge1)
		for k := range perEdge1 {
			bodies1[e][k] = one.batch(t, edges[e], k)
		}
	}
	var a1 answers
	var next atomic.Int64
	var accepted1 atomic.Int64
	t1 := time.Now()
	end1 := t1.Add(capFor)
	for range ovConcurrent {
		wg.Go(func() {
			for time.Now().Before(end1) {
				c := int(next.Add(1) - 1)
				e, k := c%nEdges, c/nEdges
				if k >= perEdge1 {
					return
				}
				for time.Now().Before(end1.Add(ovClientTimeout)) {
					st := time.Now()
					code, hdr, b, err := ovPost(ctx, client, coll.base, edges[e].token, bodies1[e][k])
					if a1.record(code, hdr, b, err, time.Since(st)) {
						one.ack(e, k)
						accepted1.Add(1000)
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
	took1 := time.Since(t1)
	rate1 := float64(accepted1.Load()) / took1.Seconds()
	a1.check(t, "1×")
	bodies1 = nil
	t.Logf("1×: %s readings accepted in %s = %s; %s", perSec(float64(accepted1.Load())), took1.Round(time.Millisecond), perSec(rate1), &a1)
	if rate1 <= 0 {
		t.Fatalf("the collector accepted nothing in the 1× phase: %s", &a1)
	}

	// 2×: open loop. Arrival i is due at t2 + i/rate and goes to edge
	// i mod N, which sends the oldest batch it had refused or else its next
	// fresh one; nothing waits for an answer.
	offered := 2 * rate1 / 1000 // batches/s
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
	stopSampler()
	bodies2 = nil
	rate2 := float64(okInWindow.Load()) / overFor.Seconds()
	a2.check(t, "2×")
	t.Logf("2×: offered %.0f batches/s (%d arrivals in %s, max scheduler lag %s, peak %d outstanding, %d re-sends, %d held back by the generator's guard); last answer after %s; %s",
		offered, arrivals, sent.Round(time.Millisecond), maxLag.Round(time.Millisecond), peakOut, resends, skipped, drained.Round(time.Millisecond), &a2)
	if skipped > 0 {
		t.Errorf("2×: %d arrivals held back because %d requests were outstanding: the load was not open loop", skipped, ovMaxOutstanding)
	}

	// Memory: peaks per phase, and the slope over the last half of the 2×
	// phase (least squares).
	var peak1, peak2 int64
	var xs, ys []float64
	lastHalf, p2end := t2.Sub(samplerStart)+overFor/2, end2.Sub(samplerStart)
	for _, s := range samples {
		if s.phase == 1 {
			peak1 = max(peak1, s.m.rss)
			continue
		}
		peak2 = max(peak2, s.m.rss)
		if s.at >= lastHalf && s.at <= p2end {
			xs = append(xs, s.at.Seconds())
			ys = append(ys, float64(s.m.rss)/(1<<20))
		}
	}
	slope := slopeOf(xs, ys) * 60 // MiB per minute
	final := memoryOf(coll.p)
	t.Logf("memory: %d samples; peak RSS 1× %s, 2× %s; slope over the last half of 2× %+.1f MiB/min; now %s", len(samples), mib(peak1), mib(peak2), slope, final)

	// Nothing acknowledged is lost, nothing stored twice.
	lost, stored, unacked, ackedReadings := verifyOverload(t, coll.dbURL, []*ovPhase{warm, one, two})
	if lost > 0 {
		t.Errorf("%d acknowledged readings are not in readings", lost)
	}

	stage := "collector overload"
	rep.add(row{stage: stage, what: fmt.Sprintf("sustained accepted rate, %d registered edges (100 sensors each), closed loop: %d posters, 1,000-reading batches, 503/429 retried after 20 ms, %s (%d 503/429)",
		nEdges, ovConcurrent, capFor, a1.r429+a1.r503), figure: perSec(rate1) + " readings"})
	rep.add(row{stage: stage, what: fmt.Sprintf("accepted at 2× offered open loop: %.0f batches/s over %d edges for %s (%d arrivals, %d of them re-sends of refused batches; scheduler lag ≤ %s, ≤ %d outstanding)",
		offered, nEdges, overFor, arrivals, resends, maxLag.Round(time.Millisecond), peakOut),
		figure: perSec(rate2) + " readings", baseline: perSec(rate1) + " (1×)", ratio: ratio(rate2, rate1), goal: "≈ 1× (no collapse)"})
	rep.add(row{stage: stage, what: "answers at 2× (client timeout 30 s)", figure: a2.String(), goal: "other 0, errors 0; 429/503 with Retry-After"})
	rep.add(row{stage: stage, what: "answer time at 2×",
		figure: fmt.Sprintf("2xx p50 %s, p99 %s; 503/429 p50 %s, p99 %s, max %s", ms(pct(a2.okLat, .5)), ms(pct(a2.okLat, .99)),
			ms(pct(a2.ovLat, .5)), ms(pct(a2.ovLat, .99)), ms(pct(a2.ovLat, 1)))})
	rep.add(row{stage: stage, what: fmt.Sprintf("sm-collector peak RSS in the 2× phase (slope over its last half: %+.1f MiB/min; VmHWM at the end %s)", slope, mib(final.hwm)),
		figure: mib(peak2), baseline: mib(peak1) + " (1×)", ratio: ratio(float64(peak2), float64(peak1)), goal: "bounded: plateau"})
	rep.add(row{stage: stage, what: fmt.Sprintf("acknowledged readings (2xx, all phases) missing from readings; %d stored, %d of them from batches never answered 2xx, %d repeated 2xx for re-sent batches",
		stored, unacked, two.extra+one.extra+warm.extra), figure: fmt.Sprintf("%d of %d", lost, ackedReadings), goal: "0"})
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
