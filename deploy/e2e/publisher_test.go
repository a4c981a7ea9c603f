//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// key identifies a reading: sensor id and timestamp in microseconds.
type key struct {
	sensor string
	us     int64
}

// sensorID is the sensor id sm-edge builds from the topic
// smm/{site}/{line}/{asset}/{sensor}.
func sensorID(i int) string { return fmt.Sprintf("e2e/l1/a%03d/s%04d", i/10, i) }

func topic(i int) string { return "smm/" + sensorID(i) }

// valueFunc gives the value of reading n of sensor i.
type valueFunc func(i, n int) float64

// noisy is a 4–20 mA signal well inside the profile's limits, with noise
// so that the stuck detector stays quiet.
func noisy(rng *rand.Rand) valueFunc {
	var mu sync.Mutex
	return func(i, n int) float64 {
		mu.Lock()
		defer mu.Unlock()
		return 12 + 2*math.Sin(float64(n)/50+float64(i)) + rng.Float64()*0.5
	}
}

// publication is a run of the test publisher: every reading it published
// at QoS 1 and the broker acknowledged. A publish that fails (the broker
// went away) is retried with the same sensor and timestamp until the
// broker acknowledges it, so each reading is published at least once and
// the set of published readings is exact.
type publication struct {
	total   int
	sensors int
	rate    float64
	value   valueFunc
	url     string

	acked atomic.Int64
	done  chan struct{}

	mu        sync.Mutex
	published map[key]struct{}
	retries   int
	err       error
}

// publish starts publishing total readings round-robin over sensors at
// rate readings/s to the broker at url, in windows of QoS1 publishes in
// flight. Each reading's timestamp is the wall clock when its window is
// built (unique per sensor), so stored rows measure publish→store latency.
func publish(t *testing.T, url string, total, sensors int, rate float64, value valueFunc) *publication {
	t.Helper()
	p := &publication{total: total, sensors: sensors, rate: rate, value: value, url: url,
		done: make(chan struct{}), published: make(map[key]struct{}, total)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	go func() {
		defer close(p.done)
		if err := p.run(ctx); err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
		}
	}()
	return p
}

// wait waits for the publication to finish and fails the test if it did
// not publish everything.
func (p *publication) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("publisher did not finish within %s (%d of %d acknowledged)", timeout, p.acked.Load(), p.total)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Fatalf("publisher: %v", p.err)
	}
	if len(p.published) != p.total {
		t.Fatalf("publisher: %d distinct readings acknowledged, want %d", len(p.published), p.total)
	}
}

// waitAcked waits until at least n readings were acknowledged by the
// broker.
func (p *publication) waitAcked(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	testenv.WaitFor(t, timeout, fmt.Sprintf("%d readings published", n), func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		return p.acked.Load() >= int64(n)
	})
}

type inflight struct {
	k     key
	i     int
	v     float64
	token mqtt.Token
}

const (
	window       = 500 // QoS1 publishes in flight
	tokenTimeout = 10 * time.Second
)

func (p *publication) connect(ctx context.Context) (mqtt.Client, error) {
	for {
		opts := mqtt.NewClientOptions().AddBroker(p.url).
			SetClientID("e2e-pub-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
			SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
			SetConnectTimeout(3 * time.Second).SetKeepAlive(5 * time.Second).
			SetMaxResumePubInFlight(window).SetWriteTimeout(5 * time.Second)
		c := mqtt.NewClient(opts)
		tok := c.Connect()
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			return c, nil
		}
		c.Disconnect(0)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *publication) run(ctx context.Context) error {
	client, err := p.connect(ctx)
	if err != nil {
		return err
	}
	defer func() { client.Disconnect(100) }()
	last := make([]int64, p.sensors)
	var pending, retry []inflight
	start := time.Now()
	next := 0
	// settle waits for every pending publish; the failed ones go to retry.
	settle := func() bool {
		ok := true
		for _, f := range pending {
			if f.token.WaitTimeout(tokenTimeout) && f.token.Error() == nil {
				p.mu.Lock()
				p.published[f.k] = struct{}{}
				p.mu.Unlock()
				p.acked.Add(1)
				continue
			}
			ok = false
			retry = append(retry, f)
		}
		pending = pending[:0]
		return ok
	}
	for next < p.total || len(retry) > 0 || len(pending) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var batch []inflight
		switch {
		case len(retry) > 0:
			batch, retry = retry, nil
			p.mu.Lock()
			p.retries += len(batch)
			p.mu.Unlock()
		case next < p.total:
			// Pace: reading n is due at start + n/rate.
			if d := time.Until(start.Add(time.Duration(float64(next) / p.rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
			n := min(window, p.total-next)
			for j := range n {
				idx := next + j
				i := idx % p.sensors
				us := time.Now().UnixMicro()
				if us <= last[i] {
					us = last[i] + 1
				}
				last[i] = us
				batch = append(batch, inflight{k: key{sensorID(i), us}, i: i, v: p.value(i, idx/p.sensors)})
			}
			next += n
		}
		for _, f := range batch {
			payload := fmt.Sprintf(`{"v":%s,"ts":%d}`, strconv.FormatFloat(f.v, 'g', -1, 64), f.k.us)
			f.token = client.Publish(topic(f.i), 1, false, payload)
			pending = append(pending, f)
		}
		if !settle() {
			// The broker went away: reconnect and publish the failed ones
			// again with the same identity.
			client.Disconnect(0)
			if client, err = p.connect(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// set returns a copy of the published readings.
func (p *publication) set() map[key]struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[key]struct{}, len(p.published))
	for k := range p.published {
		m[k] = struct{}{}
	}
	return m
}

func (p *publication) retried() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retries
}
