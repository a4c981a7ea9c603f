package forward

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// receiver is a recording collector for tests: it implements the ingest and
// status contract (decode with wire.DecodeBatch, dedup by (sensor, time),
// answer with counts after "commit") and lets a test inject failures.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	quit   chan struct{}
	edgeID string

	mu       sync.Mutex
	token    string
	hook     func(b *wire.Batch) (code int, header http.Header, body string) // nil or code 0: accept
	delay    time.Duration
	offset   time.Duration // added to ServerTime
	seen     map[string]bool
	arrivals []wire.Reading // first arrivals in order
	events   []wire.Event
	gaps     []wire.Gap
	dups     int
	attempts int
	accepted int // batches accepted
	statuses []wire.Status
	reject   bool // answer every item as rejected
}

func newReceiver(t testing.TB, edgeID, token string) *receiver {
	r := &receiver{t: t, edgeID: edgeID, token: token, seen: map[string]bool{}, quit: make(chan struct{})}
	r.srv = httptest.NewServer(r)
	t.Cleanup(func() {
		close(r.quit)
		r.srv.Close()
	})
	return r
}

func (r *receiver) set(f func(r *receiver)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *receiver) get(f func(r *receiver)) { r.set(f) }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	r.mu.Lock()
	token, delay := r.token, r.delay
	r.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
			return
		case <-r.quit:
			return
		}
	}
	if req.Header.Get("Authorization") != "Bearer "+token {
		http.Error(w, "unknown credential", http.StatusUnauthorized)
		return
	}
	switch {
	case req.Method == http.MethodPost && req.URL.Path == "/api/v1/ingest":
		r.ingest(w, req, body)
	case req.Method == http.MethodPost && req.URL.Path == "/api/v1/edges/"+r.edgeID+"/status":
		var st wire.Status
		if err := json.Unmarshal(body, &st); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.set(func(r *receiver) { r.statuses = append(r.statuses, st) })
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, req)
	}
}

func (r *receiver) ingest(w http.ResponseWriter, req *http.Request, body []byte) {
	if ct := req.Header.Get("Content-Type"); ct != wire.ContentType {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var b wire.Batch
	if err := wire.DecodeBatch(body, &b, 0); err != nil {
		http.Error(w, "undecodable batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if b.EdgeID != r.edgeID {
		http.Error(w, "edge id mismatch", http.StatusForbidden)
		return
	}
	if r.hook != nil {
		if code, h, msg := r.hook(&b); code != 0 {
			for k, v := range h {
				w.Header()[k] = v
			}
			http.Error(w, msg, code)
			return
		}
	}
	resp := wire.IngestResponse{BatchID: b.BatchID, ServerTime: time.Now().Add(r.offset)}
	for i, rd := range b.Readings {
		if r.reject {
			resp.Rejected++
			resp.Rejections = append(resp.Rejections, wire.Rejection{Item: wire.ItemReading, Index: i, Sensor: rd.Sensor, Reason: "test"})
			continue
		}
		k := fmt.Sprint(rd.Sensor, "/", rd.Time)
		if r.seen[k] {
			resp.Duplicate++
			r.dups++
			continue
		}
		r.seen[k] = true
		r.arrivals = append(r.arrivals, rd)
		resp.Accepted++
	}
	r.events = append(r.events, b.Events...)
	r.gaps = append(r.gaps, b.Gaps...)
	resp.Accepted += len(b.Events) + len(b.Gaps)
	r.accepted++
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// waitFor polls cond until it holds or the test's deadline approaches.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *receiver) count() (n int) {
	r.get(func(r *receiver) { n = len(r.arrivals) })
	return n
}
