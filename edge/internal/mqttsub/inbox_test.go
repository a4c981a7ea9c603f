package mqttsub

import (
	"sync"
	"testing"
	"time"
)

func TestInboxTakesBatchesAndCloses(t *testing.T) {
	q := newInbox(4, 2, 1)
	for i := range 3 {
		if !q.push(Message{Topic: string(rune('a' + i))}) {
			t.Fatal("push failed")
		}
	}
	got, ok := q.take(nil, 2)
	if !ok || len(got) != 2 || got[0].Topic != "a" || got[1].Topic != "b" {
		t.Fatalf("take = %v, %v", got, ok)
	}
	q.close()
	if q.push(Message{Topic: "late"}) {
		t.Error("push after close succeeded")
	}
	got, ok = q.take(got[:0], 10)
	if !ok || len(got) != 1 || got[0].Topic != "c" {
		t.Fatalf("take after close = %v, %v; want the rest", got, ok)
	}
	if _, ok := q.take(nil, 10); ok {
		t.Error("take on a closed, empty inbox returned ok")
	}
}

// TestInboxBackpressure: push blocks while the inbox is full and resumes
// when a worker takes messages; nothing is lost or duplicated.
func TestInboxBackpressure(t *testing.T) {
	const n = 10000
	q := newInbox(8, 2, 3)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			var buf []Message
			for {
				var ok bool
				buf, ok = q.take(buf[:0], 5)
				if !ok {
					return
				}
				if q.len() > 8 {
					t.Errorf("inbox holds %d > capacity", q.len())
				}
				mu.Lock()
				for _, m := range buf {
					seen[m.Topic]++
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		q.push(Message{Topic: time.Duration(i).String()})
	}
	q.close()
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("saw %d distinct messages, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("message %s taken %d times", k, c)
		}
	}
}
