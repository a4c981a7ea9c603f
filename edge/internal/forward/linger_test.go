package forward

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/smartmaint/smartmaint/edge/internal/buffer"
)

// countQueue is a Queue that only reports how many records are available;
// linger reads nothing else. A fake: the test is about the wait's timing,
// run in a synctest bubble.
type countQueue struct {
	avail   atomic.Int64
	changed chan struct{}
}

func (q *countQueue) Peek(context.Context, int) (*buffer.Batch, error) { return nil, nil }
func (q *countQueue) Ack(context.Context, *buffer.Batch) error         { return nil }
func (q *countQueue) Release(*buffer.Batch)                            {}
func (q *countQueue) DeadLetter(context.Context, *buffer.Batch, []byte, string) error {
	return nil
}
func (q *countQueue) Changed() <-chan struct{} { return q.changed }
func (q *countQueue) Stats() buffer.Stats      { return buffer.Stats{} }
func (q *countQueue) Available() int           { return int(q.avail.Load()) }

// TestLingerEndsWhenABatchGathered: after an idle spell the forwarder
// waits BatchDelay for a trickle, but no longer than it takes
// BatchSize/lingerShare records to gather.
func TestLingerEndsWhenABatchGathered(t *testing.T) {
	const delay = 100 * time.Millisecond
	const enough = 5000 / lingerShare
	for _, tc := range []struct {
		name     string
		initial  int
		later    int           // available after arriveAt (0: nothing more)
		arriveAt time.Duration // when later records are committed
		signal   bool          // the commit wakes Changed (else the poll finds it)
		want     time.Duration
	}{
		{name: "a batch is already waiting", initial: enough, want: 0},
		{name: "a trickle waits the whole delay", initial: 3, want: delay},
		{name: "empty waits the whole delay", initial: 0, want: delay},
		{name: "a batch gathers while waiting", initial: 3, later: enough, arriveAt: 30 * time.Millisecond, signal: true, want: 30 * time.Millisecond},
		{name: "too few gather while waiting", initial: 3, later: enough - 1, arriveAt: 30 * time.Millisecond, signal: true, want: delay},
		{name: "another worker took the wake-up", initial: 3, later: enough, arriveAt: 35 * time.Millisecond, want: 40 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := &countQueue{changed: make(chan struct{}, 1)}
				q.avail.Store(int64(tc.initial))
				cfg := Default()
				cfg.URL = "http://collector.test"
				cfg.BatchDelay = delay
				f, err := New(cfg, q, Options{EdgeID: testEdge, Token: testToken})
				if err != nil {
					t.Fatal(err)
				}
				if tc.later > 0 {
					go func() {
						time.Sleep(tc.arriveAt)
						q.avail.Store(int64(tc.later))
						if tc.signal {
							q.changed <- struct{}{}
						}
					}()
				}
				start := time.Now()
				if !f.linger(t.Context()) {
					t.Fatal("linger returned false without cancellation")
				}
				if got := time.Since(start); got != tc.want {
					t.Errorf("lingered %s, want %s", got, tc.want)
				}
			})
		})
	}
}

func TestLingerStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &countQueue{changed: make(chan struct{}, 1)}
		cfg := Default()
		cfg.URL = "http://collector.test"
		cfg.BatchDelay = time.Minute
		f, err := New(cfg, q, Options{EdgeID: testEdge, Token: testToken})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if f.linger(ctx) {
			t.Error("linger returned true after cancellation")
		}
	})
}
