package mqttsub

import "sync"

// inbox is the bounded queue between paho's router goroutine and the
// workers. Unlike a channel it lets a worker take everything pending in one
// step, and it wakes a second worker only when the first one cannot keep
// up (pending reaches wakeMore): under light load one worker handles the
// messages without a goroutine hand-off per message, under backlog (for
// example while a durable Write waits for fsync) several workers run and
// their Writes can share one commit.
type inbox struct {
	mu       sync.Mutex
	notEmpty *sync.Cond
	notFull  *sync.Cond
	pending  []Message
	cap      int
	wakeMore int
	active   int // workers not waiting
	waiting  int // workers waiting for messages
	closed   bool
}

// newInbox returns an inbox for the given number of workers.
func newInbox(capacity, wakeMore, workers int) *inbox {
	q := &inbox{pending: make([]Message, 0, capacity), cap: capacity, wakeMore: max(wakeMore, 1), active: workers}
	q.notEmpty = sync.NewCond(&q.mu)
	q.notFull = sync.NewCond(&q.mu)
	return q
}

// push appends m, waiting while the inbox is full (backpressure on the
// broker connection). It returns false once the inbox is closed.
func (q *inbox) push(m Message) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.pending) >= q.cap && !q.closed {
		q.notFull.Wait()
	}
	if q.closed {
		return false
	}
	q.pending = append(q.pending, m)
	if q.waiting > 0 && (q.active == 0 || len(q.pending) >= q.wakeMore) {
		q.notEmpty.Signal()
	}
	return true
}

// take moves up to max pending messages into buf (which it returns). It
// waits while the inbox is empty; ok is false when it is closed and empty.
func (q *inbox) take(buf []Message, max int) ([]Message, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.active--
	for len(q.pending) == 0 && !q.closed {
		q.waiting++
		q.notEmpty.Wait()
		q.waiting--
	}
	q.active++
	if len(q.pending) == 0 {
		return buf, false
	}
	n := min(len(q.pending), max)
	buf = append(buf, q.pending[:n]...)
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	q.notFull.Broadcast()
	if rest > 0 && q.waiting > 0 && rest >= q.wakeMore {
		q.notEmpty.Signal()
	}
	return buf, true
}

// len returns the number of pending messages.
func (q *inbox) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// close makes push fail from now on and take return what is left, then
// false.
func (q *inbox) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
}
