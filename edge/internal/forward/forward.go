// Package forward drains sm-edge's durable queue to the collector and
// reports the edge's status (ARCHITECTURE.md §4.3).
//
// The forwarder peeks a batch from the queue (events and gaps first, then
// the newest and the oldest readings: see package buffer), encodes it with
// shared/wire and POSTs it to {url}/api/v1/ingest with the edge's bearer
// token. Records are deleted only after a 2xx wire.IngestResponse, which
// the collector sends after its transaction committed. Answers are
// classified at this boundary:
//
//   - 2xx: acknowledged; rejected items are logged and counted (the
//     collector keeps them in its dead-letter table) and dropped here.
//   - network errors, 408, 425, 429, 5xx, an unreadable 2xx: retried with
//     exponential backoff and jitter; a Retry-After header (seconds or an
//     HTTP date) is obeyed, up to Config.Backoff.MaxRetryAfter, plus up to
//     a quarter more so that a refused fleet does not return in lockstep.
//   - 401, 403: the data is kept, the alarm "uplink_unauthorized" is raised
//     (status, metric, error log) and the request is retried at the
//     backoff cap until the credential works again.
//   - 400: the collector cannot decode the batch; it is moved to the
//     queue's bounded dead-letter bucket with a "dead_letter" gap record,
//     so a poison batch never blocks the queue.
//   - 413: the batch is too large; the batch size is halved.
//   - any other 4xx (wrong URL, ...): kept, alarm "uplink_rejected",
//     retried with backoff.
//
// Up to Config.Concurrency batches are in flight, each retried by its own
// worker with its own backoff; a retried batch keeps its batch id.
// The clock offset to the collector is estimated from each answer's
// ServerTime, NTP style (offset = server time − (send time + RTT/2)),
// keeping the sample with the smallest round trip of the last eight.
package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Alarms raised by the forwarder (wire.Status.Alarms).
const (
	AlarmUnauthorized = "uplink_unauthorized"
	AlarmRejected     = "uplink_rejected"
)

// Queue is what the forwarder needs from the durable queue. Peek hands out
// records that stay queued until Ack, Release or DeadLetter and never hands
// out a record twice meanwhile; all methods are called concurrently.
// *buffer.Queue implements it.
type Queue interface {
	Peek(ctx context.Context, max int) (*buffer.Batch, error)
	Ack(ctx context.Context, b *buffer.Batch) error
	Release(b *buffer.Batch)
	DeadLetter(ctx context.Context, b *buffer.Batch, body []byte, reason string) error
	Changed() <-chan struct{}
	// Available is the number of records a Peek could hand out now.
	Available() int
	Stats() buffer.Stats
}

// Options are the forwarder's run-time dependencies.
type Options struct {
	// EdgeID is this edge's id, sent in every batch and status report.
	EdgeID string
	// Token is the bearer token (see LoadToken). It is never logged.
	Token string
	// Version is the sm-edge version reported in status.
	Version string
	// Client sends the requests; nil builds one with NewHTTPClient.
	Client *http.Client
	// Status, when set, fills the parts of a status report the forwarder
	// does not know (broker state, active models, extra alarms). It is
	// called from the status goroutine.
	Status func(*wire.Status)
	// Logger and Registerer as usual; nil means none.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// State is the forwarder's view of the uplink.
type State struct {
	// Up is true after a successful request, false after a failed one.
	Up bool
	// Alarms are the active alarms (AlarmUnauthorized, AlarmRejected).
	Alarms []string
	// ClockOffset is the collector's clock minus the edge's.
	ClockOffset time.Duration
	// ClockOffsetKnown is false until a first answer carried a server time.
	ClockOffsetKnown bool
	// LastError describes the last failure; LastSuccess is when a batch
	// was last acknowledged.
	LastError   string
	LastSuccess time.Time
}

// Forwarder drains a Queue to the collector.
type Forwarder struct {
	cfg       Config
	q         Queue
	opts      Options
	client    *http.Client
	log       *slog.Logger
	m         *metrics
	ingestURL string
	statusURL string
	started   time.Time

	mu        sync.Mutex
	state     State
	alarms    map[string]bool
	samples   []clockSample
	batchSize int
}

type clockSample struct {
	rtt    time.Duration
	offset time.Duration
}

// clockSamples is how many recent offset samples the minimum-RTT filter
// keeps (NTP's clock filter uses eight).
const clockSamples = 8

// maxAnswer bounds how much of a response body is read.
const maxAnswer = 4 << 20

// New builds a forwarder. It validates cfg and builds the HTTP client.
func New(cfg Config, q Queue, opts Options) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.EdgeID == "" {
		return nil, errors.New("forward: edge id is required")
	}
	client := opts.Client
	if client == nil {
		var err error
		if client, err = NewHTTPClient(cfg); err != nil {
			return nil, err
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := strings.TrimRight(cfg.URL, "/")
	f := &Forwarder{
		cfg:       cfg,
		q:         q,
		opts:      opts,
		client:    client,
		log:       log.With("component", "forward"),
		ingestURL: base + "/api/v1/ingest",
		statusURL: base + "/api/v1/edges/" + urlPathEscape(opts.EdgeID) + "/status",
		started:   time.Now(),
		alarms:    make(map[string]bool),
		batchSize: cfg.BatchSize,
	}
	f.m = newMetrics(f, opts.Registerer)
	return f, nil
}

func urlPathEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "%", "%25"), "/", "%2F")
}

// State returns a snapshot of the uplink state.
func (f *Forwarder) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.state
	s.Alarms = nil
	for _, a := range []string{AlarmUnauthorized, AlarmRejected} {
		if f.alarms[a] {
			s.Alarms = append(s.Alarms, a)
		}
	}
	return s
}

// Run forwards until ctx ends, then returns nil. A batch in flight when
// ctx ends stays queued and is sent again after a restart (the collector
// deduplicates). Status reports run alongside.
func (f *Forwarder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if f.cfg.StatusInterval > 0 {
		wg.Go(func() { f.statusLoop(ctx) })
	}
	for range f.cfg.Concurrency {
		wg.Go(func() { f.drain(ctx) })
	}
	wg.Wait()
	f.m.unregister()
	return nil
}

// outcome classifies one attempt.
type outcome int

const (
	outOK outcome = iota
	outRetry
	outUnauthorized
	outRejectedURL
	outDeadLetter
	outTooLarge
)

var outcomeNames = [...]string{"ok", "retry", "unauthorized", "rejected", "dead_letter", "too_large"}

type attempt struct {
	out        outcome
	retryAfter time.Duration // from the answer; 0 when none
	err        error
	body       []byte // the request body (for the dead-letter bucket)
	resp       *wire.IngestResponse
}

func (f *Forwarder) drain(ctx context.Context) {
	backoff := f.cfg.Backoff.Initial
	idle := false
	var b *buffer.Batch
	var enc []byte
	for ctx.Err() == nil {
		if b == nil {
			if idle && f.cfg.BatchDelay > 0 && !f.linger(ctx) {
				return
			}
			var err error
			b, err = f.q.Peek(ctx, f.currentBatchSize())
			if err != nil {
				f.log.Warn("cannot read the queue", "error", err)
				if !sleep(ctx, backoff) {
					return
				}
				continue
			}
			if b == nil {
				idle = true
				select {
				case <-ctx.Done():
					return
				case <-f.q.Changed():
				case <-time.After(time.Second): // safety net; Changed normally wakes us
				}
				continue
			}
			idle = false
		}
		a := f.send(ctx, b, enc[:0])
		enc = a.body
		f.m.batches.WithLabelValues(outcomeNames[a.out]).Inc()
		if ctx.Err() != nil && a.out != outOK {
			f.q.Release(b)
			return
		}
		switch a.out {
		case outOK:
			// The collector committed: delete even while stopping.
			if err := f.q.Ack(context.WithoutCancel(ctx), b); err != nil {
				f.log.Error("cannot delete an acknowledged batch; it will be sent again", "batch", b.ID, "error", err)
				f.q.Release(b)
			}
			f.succeeded(a.resp)
			b = nil
			backoff = f.cfg.Backoff.Initial
			continue
		case outDeadLetter:
			if err := f.q.DeadLetter(context.WithoutCancel(ctx), b, a.body, a.err.Error()); err != nil {
				f.log.Error("cannot dead-letter a refused batch", "batch", b.ID, "error", err)
				f.q.Release(b)
			}
			f.setUp(true, "")
			b = nil
			continue
		case outTooLarge:
			f.q.Release(b)
			f.shrinkBatch(b.Len())
			b = nil
			continue
		}
		wait := jitter(backoff)
		if a.out == outUnauthorized {
			wait = jitter(f.cfg.Backoff.Max)
		}
		if a.retryAfter > 0 {
			wait = spreadRetryAfter(min(a.retryAfter, f.cfg.Backoff.MaxRetryAfter))
		}
		backoff = min(2*backoff, f.cfg.Backoff.Max)
		f.log.Warn("forwarding failed; will retry", "batch", b.ID, "records", b.Len(), "error", a.err, "retry_in", wait)
		if !sleep(ctx, wait) {
			f.q.Release(b)
			return
		}
	}
	if b != nil {
		f.q.Release(b)
	}
}

// lingerShare is the share of BatchSize that ends a linger early: under
// load a batch this large gathers in a fraction of BatchDelay, and waiting
// longer would only add latency (at 10,000 readings/s and the default
// batch size, 250 records take 25 ms against a 100 ms BatchDelay).
const lingerShare = 20

// linger lets records accumulate after the queue ran empty, so that a
// trickle is not sent one record at a time: it waits until BatchDelay has
// passed or BatchSize/lingerShare records are available, whichever comes
// first; false when ctx ended. Commits wake it (Changed); the poll covers
// wake-ups taken by another worker.
func (f *Forwarder) linger(ctx context.Context) bool {
	enough := max(1, f.currentBatchSize()/lingerShare)
	deadline := time.NewTimer(f.cfg.BatchDelay)
	defer deadline.Stop()
	poll := time.NewTicker(max(f.cfg.BatchDelay/10, time.Millisecond))
	defer poll.Stop()
	for f.q.Available() < enough {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-f.q.Changed():
		case <-poll.C:
		}
	}
	return true
}

// jitter returns a wait in [d/2, d): "equal jitter", so that a fleet that
// failed together does not retry in lockstep but still backs off.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// spreadRetryAfter returns a wait in [d, 1.25·d): never sooner than the
// collector asked, but a fleet that an overloaded collector refused in
// the same second does not come back in the same second.
func spreadRetryAfter(d time.Duration) time.Duration {
	if d < 4 {
		return d
	}
	return d + rand.N(d/4)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (f *Forwarder) currentBatchSize() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.batchSize
}

func (f *Forwarder) shrinkBatch(had int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batchSize = max(1, min(f.batchSize, had)/2)
	f.log.Warn("collector refused the batch as too large; halving the batch size", "batch_size", f.batchSize)
}

// send makes one attempt to deliver b; enc is reused for the body.
func (f *Forwarder) send(ctx context.Context, b *buffer.Batch, enc []byte) attempt {
	first, last := b.SeqRange()
	wb := wire.Batch{
		EdgeID: f.opts.EdgeID, BatchID: b.ID, FirstSeq: first, LastSeq: last,
		SentAt: time.Now().UnixNano(), Readings: b.Readings, Events: b.Events, Gaps: b.Gaps,
	}
	body, err := wire.EncodeBatch(enc, &wb)
	if err != nil {
		// Cannot happen for batches within wire.MaxItems; treat as too large.
		return attempt{out: outTooLarge, err: err, body: body}
	}
	a := attempt{body: body}
	rctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, f.ingestURL, bytes.NewReader(body))
	if err != nil {
		a.out, a.err = outRetry, err
		return a
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Token)
	req.Header.Set("Content-Type", wire.ContentType)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sm-edge/"+f.opts.Version)
	start := time.Now()
	resp, err := f.client.Do(req)
	if err != nil {
		f.setUp(false, err.Error())
		a.out, a.err = outRetry, fmt.Errorf("post batch: %w", err)
		return a
	}
	answer, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	rtt := time.Since(start)
	f.m.latency.Observe(rtt.Seconds())
	code := resp.StatusCode
	a.retryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	switch {
	case code >= 200 && code < 300:
		var ir wire.IngestResponse
		if rerr != nil {
			a.out, a.err = outRetry, fmt.Errorf("read answer: %w", rerr)
		} else if err := json.Unmarshal(answer, &ir); err != nil {
			a.out, a.err = outRetry, fmt.Errorf("collector answered %d with an unreadable body: %w", code, err)
		} else {
			a.out, a.resp = outOK, &ir
			if !ir.ServerTime.IsZero() {
				f.clockSample(start, rtt, ir.ServerTime)
			}
		}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		a.out, a.err = outUnauthorized, fmt.Errorf("collector refused the edge credential: %s", statusText(code, answer))
		f.raise(AlarmUnauthorized, a.err)
	case code == http.StatusBadRequest:
		a.out, a.err = outDeadLetter, fmt.Errorf("collector could not decode the batch: %s", statusText(code, answer))
	case code == http.StatusRequestEntityTooLarge:
		a.out, a.err = outTooLarge, fmt.Errorf("collector refused the batch size: %s", statusText(code, answer))
		if b.Len() <= 1 {
			a.out = outDeadLetter
		}
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly || code == http.StatusTooManyRequests || code >= 500:
		a.out, a.err = outRetry, fmt.Errorf("collector busy or failing: %s", statusText(code, answer))
	default:
		a.out, a.err = outRejectedURL, fmt.Errorf("collector refused the request: %s", statusText(code, answer))
		f.raise(AlarmRejected, a.err)
	}
	if a.out == outRetry || a.out == outUnauthorized || a.out == outRejectedURL {
		f.setUp(false, a.err.Error())
	}
	return a
}

// statusText renders a status code and the start of the answer for logs.
func statusText(code int, body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return strconv.Itoa(code) + " " + http.StatusText(code)
	}
	return strconv.Itoa(code) + " " + http.StatusText(code) + ": " + s
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func (f *Forwarder) clockSample(start time.Time, rtt time.Duration, server time.Time) {
	off := server.Sub(start.Round(0).Add(rtt / 2))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.samples = append(f.samples, clockSample{rtt: rtt, offset: off})
	if len(f.samples) > clockSamples {
		f.samples = f.samples[len(f.samples)-clockSamples:]
	}
	best := f.samples[0]
	for _, s := range f.samples[1:] {
		if s.rtt < best.rtt {
			best = s
		}
	}
	f.state.ClockOffset, f.state.ClockOffsetKnown = best.offset, true
}

func (f *Forwarder) succeeded(r *wire.IngestResponse) {
	f.m.records.WithLabelValues("accepted").Add(float64(r.Accepted))
	f.m.records.WithLabelValues("duplicate").Add(float64(r.Duplicate))
	f.m.records.WithLabelValues("rejected").Add(float64(r.Rejected))
	if r.Rejected > 0 {
		attrs := []any{"batch", r.BatchID, "rejected", r.Rejected}
		for i, rj := range r.Rejections {
			if i == 5 {
				break
			}
			attrs = append(attrs, fmt.Sprintf("rejection%d", i), rj.Item+"["+strconv.Itoa(rj.Index)+"] "+rj.Sensor+": "+rj.Reason)
		}
		f.log.Warn("collector rejected items (kept in its dead-letter table)", attrs...)
	}
	f.mu.Lock()
	cleared := f.alarms[AlarmUnauthorized] || f.alarms[AlarmRejected]
	clear(f.alarms)
	f.state.LastSuccess = time.Now()
	f.mu.Unlock()
	if cleared {
		f.log.Info("uplink accepted again; alarms cleared")
	}
	f.setUp(true, "")
}

func (f *Forwarder) setUp(up bool, lastErr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.Up = up
	if lastErr != "" {
		f.state.LastError = lastErr
	}
}

func (f *Forwarder) raise(alarm string, err error) {
	f.mu.Lock()
	was := f.alarms[alarm]
	f.alarms[alarm] = true
	f.mu.Unlock()
	if !was {
		f.log.Error("uplink alarm raised; queued data is kept", "alarm", alarm, "error", err)
	}
}

// statusLoop posts a status report every StatusInterval.
func (f *Forwarder) statusLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.StatusInterval)
	defer t.Stop()
	for {
		if err := f.postStatus(ctx); err != nil && ctx.Err() == nil {
			f.m.status.WithLabelValues("error").Inc()
			f.log.Warn("cannot post status", "error", err)
		} else if err == nil {
			f.m.status.WithLabelValues("ok").Inc()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Report builds the status report the forwarder would post now.
func (f *Forwarder) Report() wire.Status {
	qs := f.q.Stats()
	fs := f.State()
	st := wire.Status{
		EdgeID:            f.opts.EdgeID,
		Version:           f.opts.Version,
		StartedAt:         f.started.UTC(),
		SentAt:            time.Now().UTC(),
		BacklogRecords:    qs.Records,
		BacklogBytes:      qs.Bytes,
		OldestAgeSeconds:  qs.OldestAge.Seconds(),
		RunwayHours:       qs.RunwayHours,
		ReadingsPerSecond: qs.RecordsPerSecond,
		Drops:             qs.Drops,
		ClockOffsetMs:     float64(fs.ClockOffset) / float64(time.Millisecond),
		Alarms:            fs.Alarms,
	}
	if f.opts.Status != nil {
		f.opts.Status(&st)
	}
	return st
}

func (f *Forwarder) postStatus(ctx context.Context) error {
	body, err := json.Marshal(f.Report())
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, f.statusURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post status: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sm-edge/"+f.opts.Version)
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("post status: %w", err)
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		err := fmt.Errorf("post status: %s", statusText(resp.StatusCode, answer))
		f.raise(AlarmUnauthorized, err)
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return fmt.Errorf("post status: %s", statusText(resp.StatusCode, answer))
	}
	return nil
}
