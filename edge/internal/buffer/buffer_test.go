package buffer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"github.com/smartmaint/smartmaint/shared/wire"
)

func testConfig() Config {
	c := Default()
	c.Check = CheckFull
	return c
}

func openQueue(t testing.TB, path string, cfg Config) *Queue {
	t.Helper()
	q, err := Open(t.Context(), path, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func readings(sensor string, from, n int) []wire.Reading {
	rs := make([]wire.Reading, n)
	for i := range rs {
		rs[i] = wire.Reading{Sensor: sensor, Time: int64(from + i), Value: float64(from + i)}
	}
	return rs
}

// drainAll peeks and acks until the queue is empty and returns everything.
func drainAll(t testing.TB, q *Queue, max int) (rs []wire.Reading, es []wire.Event, gs []wire.Gap) {
	t.Helper()
	ctx := t.Context()
	for {
		b, err := q.Peek(ctx, max)
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			return
		}
		rs = append(rs, b.Readings...)
		es = append(es, b.Events...)
		gs = append(gs, b.Gaps...)
		if err := q.Ack(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWritePeekAck(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), testConfig())
	ctx := t.Context()
	in := readings("a", 0, 5)
	in[2].Model, in[2].Score, in[2].Flags = "m@1", 0.5, wire.FlagAnomaly
	if err := q.Write(ctx, in); err != nil {
		t.Fatal(err)
	}
	ev := wire.Event{Sensor: "a", Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityMajor, Rule: "H", Time: 3}
	if err := q.WriteEvents(ctx, []wire.Event{ev}); err != nil {
		t.Fatal(err)
	}
	b, err := q.Peek(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events) != 1 || len(b.Readings) != 5 {
		t.Fatalf("peek: %d events, %d readings; want 1, 5", len(b.Events), len(b.Readings))
	}
	// Sequence numbers are assigned in commit order and not in the input.
	for i, r := range b.Readings {
		if r.Seq == 0 || (i > 0 && r.Seq <= b.Readings[i-1].Seq) {
			t.Errorf("reading %d: seq %d not increasing", i, r.Seq)
		}
		in[i].Seq = r.Seq
	}
	if diff := cmp.Diff(in, b.Readings); diff != "" {
		t.Errorf("readings (-want +got):\n%s", diff)
	}
	if b.Events[0].Seq <= b.Readings[4].Seq {
		t.Errorf("event seq %d should follow the readings' (written later)", b.Events[0].Seq)
	}
	ev.Seq = b.Events[0].Seq
	if diff := cmp.Diff(ev, b.Events[0]); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
	// In flight: not handed out twice.
	if b2, _ := q.Peek(ctx, 100); b2 != nil {
		t.Fatalf("second peek returned %d records in flight", b2.Len())
	}
	if s := q.Stats(); s.Records != 6 || s.InFlight != 6 || s.OldestAge <= 0 {
		t.Errorf("stats before ack: records %d in flight %d oldest age %s", s.Records, s.InFlight, s.OldestAge)
	}
	if err := q.Ack(ctx, b); err != nil {
		t.Fatal(err)
	}
	s := q.Stats()
	if s.Records != 0 || s.Bytes != 0 || s.InFlight != 0 || s.Appends != 6 || s.OldestAge != 0 {
		t.Errorf("stats after ack: %+v", s)
	}
}

func TestReleaseHandsOutAgain(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), testConfig())
	ctx := t.Context()
	if err := q.Write(ctx, readings("a", 0, 3)); err != nil {
		t.Fatal(err)
	}
	b, _ := q.Peek(ctx, 10)
	q.Release(b)
	b2, _ := q.Peek(ctx, 10)
	if b2 == nil || b2.Len() != 3 || b2.ID != b.ID {
		t.Fatalf("after release: %+v, want the same 3 records and id %q", b2, b.ID)
	}
}

// TestAvailable: records not in flight, what the forwarder's linger
// counts, through write, peek, release and ack.
func TestAvailable(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), testConfig())
	ctx := t.Context()
	if n := q.Available(); n != 0 {
		t.Fatalf("empty queue: %d available", n)
	}
	if err := q.Write(ctx, readings("a/b/c/d", 0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := q.WriteEvents(ctx, []wire.Event{{Sensor: "a/b/c/d", Kind: wire.EventAnomaly, Time: 5}}); err != nil {
		t.Fatal(err)
	}
	b, err := q.Peek(ctx, 4)
	if err != nil || b == nil {
		t.Fatalf("peek: %v %v", b, err)
	}
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"after peek of 4", func() {}, 7},
		{"after release", func() { q.Release(b) }, 11},
		{"after peek and ack of 4", func() {
			if b, err = q.Peek(ctx, 4); err != nil {
				t.Fatal(err)
			}
			if err := q.Ack(ctx, b); err != nil {
				t.Fatal(err)
			}
		}, 7},
	}
	for _, s := range steps {
		s.do()
		if n := q.Available(); n != s.want {
			t.Errorf("%s: %d available, want %d", s.name, n, s.want)
		}
	}
}

func TestGroupCommitConcurrentWriters(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), testConfig())
	ctx := t.Context()
	const writers, writes = 32, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				if err := q.Write(ctx, readings(fmt.Sprint("w", w), i, 1)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	s := q.Stats()
	if s.Appends != writers*writes {
		t.Fatalf("appends %d, want %d", s.Appends, writers*writes)
	}
	if s.Commits >= s.Appends {
		t.Errorf("%d commits for %d appends: writes were not grouped", s.Commits, s.Appends)
	}
	rs, _, _ := drainAll(t, q, 1000)
	seen := map[string]bool{}
	seqs := map[uint64]bool{}
	for _, r := range rs {
		k := fmt.Sprint(r.Sensor, "/", r.Time)
		if seen[k] || seqs[r.Seq] {
			t.Fatalf("duplicate %s seq %d", k, r.Seq)
		}
		seen[k], seqs[r.Seq] = true, true
	}
	if len(seen) != writers*writes {
		t.Fatalf("drained %d distinct readings, want %d", len(seen), writers*writes)
	}
}

func TestSequenceSurvivesReopenAndCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	ctx := t.Context()
	q, err := Open(ctx, path, testConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Write(ctx, readings("a", 0, 3)); err != nil {
		t.Fatal(err)
	}
	last := q.Stats().LastSeq
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, path, testConfig())
	if err := q.Write(ctx, readings("a", 3, 1)); err != nil {
		t.Fatal(err)
	}
	rs, _, _ := drainAll(t, q, 10)
	if got := rs[len(rs)-1].Seq; got != last+1 {
		t.Errorf("seq after reopen %d, want %d", got, last+1)
	}
	last = q.Stats().LastSeq
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	// A corrupt file is replaced; numbering continues above the old one.
	if err := os.WriteFile(path, []byte(strings.Repeat("garbage!", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, path, testConfig())
	if err := q.Write(ctx, readings("a", 4, 1)); err != nil {
		t.Fatal(err)
	}
	rs, _, gs := drainAll(t, q, 10)
	if len(rs) != 1 || rs[0].Seq <= last {
		t.Errorf("seq after corruption %d, want > %d", rs[0].Seq, last)
	}
	if len(gs) != 1 || gs[0].Seq <= last {
		t.Errorf("gaps %+v, want one with seq > %d", gs, last)
	}
}

func TestLiveFirst(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), testConfig())
	ctx := t.Context()
	if err := q.Write(ctx, readings("a", 0, 1000)); err != nil { // the backlog
		t.Fatal(err)
	}
	if err := q.Write(ctx, readings("a", 1000, 10)); err != nil { // live
		t.Fatal(err)
	}
	b, err := q.Peek(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var times []int64
	for _, r := range b.Readings {
		times = append(times, r.Time)
	}
	var want []int64
	for i := range 50 {
		want = append(want, int64(i)) // the oldest half
	}
	for i := 960; i < 1010; i++ {
		want = append(want, int64(i)) // the newest half, live included
	}
	if diff := cmp.Diff(want, times); diff != "" {
		t.Errorf("batch times (-want +got):\n%s", diff)
	}
	// A small queue is sent whole and in order.
	q.Release(b)
	rs, _, _ := drainAll(t, q, 5000)
	if len(rs) != 1010 || !slices.IsSortedFunc(rs, func(a, b wire.Reading) int { return int(a.Seq - b.Seq) }) {
		t.Errorf("drain of a small queue: %d readings, sorted %v", len(rs), false)
	}
}

func TestBudgetShedsOldestTelemetryKeepsEvents(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBytes = minMaxBytes
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), cfg)
	ctx := t.Context()
	events := []wire.Event{
		{Sensor: "s0", Kind: wire.EventAnomaly, State: wire.EventRaised, Severity: wire.SeverityMajor, Time: 1},
		{Sensor: "s1", Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityCritical, Time: 2},
	}
	if err := q.WriteEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	const perSensor, sensors = 2000, 3
	written := 0
	for i := 0; i < perSensor; i += 50 {
		for s := range sensors {
			if err := q.Write(ctx, readings(fmt.Sprint("s", s), i, 50)); err != nil {
				t.Fatal(err)
			}
			written += 50
		}
		if err := q.WriteEvents(ctx, []wire.Event{{Sensor: "s2", Kind: wire.EventAnomaly, State: wire.EventCleared, Severity: wire.SeverityMinor, Time: int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if s := q.Stats(); s.Bytes > cfg.MaxBytes {
		t.Errorf("queue holds %d bytes, budget %d", s.Bytes, cfg.MaxBytes)
	}
	rs, es, gs := drainAll(t, q, 500)
	if len(es) != 2+perSensor/50 {
		t.Errorf("events kept %d, want all %d", len(es), 2+perSensor/50)
	}
	shed := map[string]uint64{}
	var shedTotal uint64
	for _, g := range gs {
		if g.Reason != wire.GapBudget {
			t.Errorf("unexpected gap %+v", g)
			continue
		}
		shed[g.Sensor] += g.Count
		shedTotal += g.Count
	}
	if shedTotal == 0 {
		t.Fatal("nothing was shed; the test did not exceed the budget")
	}
	if got := uint64(len(rs)) + shedTotal; got != uint64(written) {
		t.Errorf("delivered %d + gap-accounted %d = %d, want exactly %d written", len(rs), shedTotal, got, written)
	}
	if d := q.Stats().Drops[wire.GapBudget]; d != shedTotal {
		t.Errorf("drops[%s] = %d, gaps account for %d", wire.GapBudget, d, shedTotal)
	}
	// The oldest went: per sensor, the kept readings are exactly the newest
	// ones, and the gap's range covers exactly the shed ones.
	kept := map[string][]int64{}
	for _, r := range rs {
		kept[r.Sensor] = append(kept[r.Sensor], r.Time)
	}
	for s := range sensors {
		name := fmt.Sprint("s", s)
		times := kept[name]
		slices.Sort(times)
		n := shed[name]
		if uint64(len(times))+n != perSensor {
			t.Errorf("%s: kept %d + shed %d != %d", name, len(times), n, perSensor)
		}
		if len(times) > 0 && times[0] != int64(n) {
			t.Errorf("%s: oldest kept reading is %d, want %d (the %d oldest shed)", name, times[0], n, n)
		}
		for _, g := range gs {
			if g.Sensor == name && (g.From != 0 || g.To != int64(n)-1) {
				t.Errorf("%s: gap range [%d,%d], want [0,%d]", name, g.From, g.To, n-1)
			}
		}
	}
}

func TestBudgetNeverShedsInFlight(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBytes = minMaxBytes
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), cfg)
	ctx := t.Context()
	if err := q.Write(ctx, readings("a", 0, 100)); err != nil {
		t.Fatal(err)
	}
	b, _ := q.Peek(ctx, 100) // in flight, the oldest
	for i := 100; i < 5000; i += 100 {
		if err := q.Write(ctx, readings("a", i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Ack(ctx, b); err != nil {
		t.Fatal(err)
	}
	rs, _, gs := drainAll(t, q, 1000)
	var shed uint64
	for _, g := range gs {
		shed += g.Count
		if g.From < 100 {
			t.Errorf("gap %+v covers in-flight readings", g)
		}
	}
	if got := uint64(b.Len()+len(rs)) + shed; got != 5000 {
		t.Errorf("sent %d + drained %d + shed %d = %d, want 5000", b.Len(), len(rs), shed, got)
	}
}

func TestCorruptFileMovedAside(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("this is not a bbolt file at all"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"foreign bbolt file", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
			_ = db.Close()
		}},
		{"damaged pages", func(t *testing.T, path string) {
			q, err := Open(t.Context(), path, testConfig(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if err := q.Write(t.Context(), readings("a", i*500, 500)); err != nil {
					t.Fatal(err)
				}
			}
			_ = q.Close()
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := f.Stat()
			junk := []byte(strings.Repeat("\xde\xad\xbe\xef", 1024))
			for off := int64(4 * 4096); off < fi.Size(); off += 4 * 4096 { // spare the meta pages
				_, _ = f.WriteAt(junk, off)
			}
			_ = f.Close()
		}},
	} {
		for _, check := range []string{CheckQuick, CheckFull} {
			t.Run(tc.name+"/"+check, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, FileName)
				tc.corrupt(t, path)
				orig, _ := os.ReadFile(path)
				cfg := testConfig()
				cfg.Check = check
				q := openQueue(t, path, cfg)
				aside, _ := filepath.Glob(path + ".corrupt-*")
				if len(aside) != 1 {
					t.Fatalf("moved-aside files: %v, want one", aside)
				}
				if kept, _ := os.ReadFile(aside[0]); string(kept) != string(orig) {
					t.Error("the moved-aside file differs from the corrupt original")
				}
				if err := q.Write(t.Context(), readings("b", 0, 2)); err != nil {
					t.Fatalf("write to the fresh queue: %v", err)
				}
				rs, _, gs := drainAll(t, q, 10)
				if len(rs) != 2 || len(gs) != 1 || gs[0].Reason != wire.GapCorrupt || gs[0].To == 0 {
					t.Errorf("after recovery: %d readings, gaps %+v; want 2 and one %s gap", len(rs), gs, wire.GapCorrupt)
				}
			})
		}
	}
}

func TestLockedFileIsNotCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	openQueue(t, path, testConfig())
	_, err := Open(t.Context(), path, testConfig(), Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Errorf("a locked file was moved aside: %v", aside)
	}
}

func TestCorruptRecordBecomesGap(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	q, err := Open(t.Context(), path, testConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Write(t.Context(), readings("a", 0, 10)); err != nil {
		t.Fatal(err)
	}
	_ = q.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTel)
		k, v := b.Cursor().First()
		k, v = b.Cursor().Seek(k)
		bad := append([]byte(nil), v...)
		bad[3] ^= 1
		k2 := append([]byte(nil), k...)
		return b.Put(k2, bad)
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, path, testConfig())
	rs, _, gs := drainAll(t, q, 100)
	if len(rs) != 9 || len(gs) != 1 || gs[0].Reason != wire.GapCorrupt || gs[0].Count != 1 {
		t.Errorf("got %d readings and gaps %+v; want 9 and one %s gap of count 1", len(rs), gs, wire.GapCorrupt)
	}
	if s := q.Stats(); s.Records != 0 || s.Bytes != 0 {
		t.Errorf("accounting after removal: %d records, %d bytes", s.Records, s.Bytes)
	}
}

func TestDeadLetter(t *testing.T) {
	cfg := testConfig()
	cfg.DeadLetterMaxBytes = 3000
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), cfg)
	ctx := t.Context()
	for round := range 3 {
		if err := q.Write(ctx, append(readings("a", round*10, 4), readings("b", round*10, 2)...)); err != nil {
			t.Fatal(err)
		}
		b, _ := q.Peek(ctx, 100)
		if err := q.DeadLetter(ctx, b, make([]byte, 1000), "400 Bad Request: undecodable batch"); err != nil {
			t.Fatal(err)
		}
	}
	rs, _, gs := drainAll(t, q, 100)
	if len(rs) != 0 {
		t.Errorf("%d readings left after dead-lettering", len(rs))
	}
	count := map[string]uint64{}
	for _, g := range gs {
		if g.Reason != wire.GapRejected {
			t.Errorf("gap %+v", g)
		}
		count[g.Sensor] += g.Count
	}
	if diff := cmp.Diff(map[string]uint64{"a": 12, "b": 6}, count); diff != "" {
		t.Errorf("dead-letter gaps (-want +got):\n%s", diff)
	}
	s := q.Stats()
	if s.DeadLetters != 2 || s.DeadLetterBytes > cfg.DeadLetterMaxBytes {
		t.Errorf("dead letters %d (%d bytes), want the 2 newest within %d bytes", s.DeadLetters, s.DeadLetterBytes, cfg.DeadLetterMaxBytes)
	}
}

func TestGapsMergeUntilPeeked(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBytes = minMaxBytes
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), cfg)
	ctx := t.Context()
	for i := 0; i < 20000; i += 100 {
		if err := q.Write(ctx, readings("a", i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := q.Peek(ctx, 1)
	if len(b.Gaps) != 1 || b.Gaps[0].Sensor != "a" {
		t.Fatalf("first peek %+v, want the one merged gap for sensor a", b)
	}
	if err := q.Ack(ctx, b); err != nil {
		t.Fatal(err)
	}
	for i := 20000; i < 30000; i += 100 {
		if err := q.Write(ctx, readings("a", i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	rs, _, gs := drainAll(t, q, 1000)
	if len(gs) != 1 {
		t.Errorf("%d gap records after the first was sent, want 1 merged", len(gs))
	}
	total := b.Gaps[0].Count + uint64(len(rs))
	for _, g := range gs {
		total += g.Count
	}
	if total != 30000 {
		t.Errorf("readings + gap counts = %d, want 30000", total)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	q, err := Open(t.Context(), filepath.Join(t.TempDir(), FileName), testConfig(), Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Write(t.Context(), readings("a", 0, 7)); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(q.m.appends); got != 7 {
		t.Errorf("appends metric %v, want 7", got)
	}
	n, err := testutil.GatherAndCount(reg, "smartmaint_edge_buffer_records", "smartmaint_edge_buffer_commit_duration_seconds",
		"smartmaint_edge_buffer_runway_hours", "smartmaint_edge_buffer_oldest_age_seconds", "smartmaint_edge_buffer_bytes")
	if err != nil || n != 5 {
		t.Errorf("gathered %d series (%v), want 5", n, err)
	}
}

func TestValidate(t *testing.T) {
	c := Config{MaxBytes: 5, CommitInterval: -1, LiveShare: 2, Check: "maybe"}
	err := c.Validate()
	for _, field := range []string{"buffer.max_bytes", "buffer.commit_interval", "buffer.max_commit_records",
		"buffer.max_pending_bytes", "buffer.live_share", "buffer.check"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v, want a problem with %s", err, field)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestClosedQueue(t *testing.T) {
	q, err := Open(t.Context(), filepath.Join(t.TempDir(), FileName), testConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = q.Close()
	if err := q.Write(context.Background(), readings("a", 0, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestOldestAgeAfterIdle(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), FileName), testConfig())
	ctx := t.Context()
	for range 3 {
		if err := q.Write(ctx, readings("a", 0, 2)); err != nil {
			t.Fatal(err)
		}
		if s := q.Stats(); s.Oldest.IsZero() {
			t.Fatalf("queue holds %d records but no oldest time", s.Records)
		}
		drainAll(t, q, 10)
		if s := q.Stats(); !s.Oldest.IsZero() || s.OldestAge != 0 {
			t.Fatalf("empty queue reports oldest %v", s.Oldest)
		}
	}
}
