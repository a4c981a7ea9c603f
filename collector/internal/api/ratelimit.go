package api

import (
	"math"
	"sync"
	"time"
)

// RateLimit configures one token bucket: Rate requests per second on
// average with bursts of up to Burst. A zero Rate disables limiting.
type RateLimit struct {
	Rate  float64
	Burst int
}

// limiter holds one token bucket per credential. Memory is bounded: idle
// buckets that have refilled completely are dropped when the map grows
// past maxBuckets, because a full bucket is the same as a new one.
type limiter struct {
	cfg RateLimit
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxIdleBuckets is when the limiter starts sweeping full buckets; well
// above any realistic number of concurrently active credentials.
const maxIdleBuckets = 10000

func newLimiter(cfg RateLimit, now func() time.Time) *limiter {
	return &limiter{cfg: cfg, now: now, buckets: make(map[string]*bucket)}
}

// allow takes one token for key. When none is left it returns false and
// how long until one will be.
func (l *limiter) allow(key string) (bool, time.Duration) {
	if l == nil || l.cfg.Rate <= 0 {
		return true, 0
	}
	burst := float64(max(l.cfg.Burst, 1))
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxIdleBuckets {
			l.sweep(now, burst)
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(burst, b.tokens+el.Seconds()*l.cfg.Rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.cfg.Rate * float64(time.Second))
	return false, wait
}

// sweep drops buckets that would be full by now. Called with mu held.
func (l *limiter) sweep(now time.Time, burst float64) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.cfg.Rate >= burst {
			delete(l.buckets, k)
		}
	}
}
