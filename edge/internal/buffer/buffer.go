// Package buffer is sm-edge's durable queue: a bbolt file that holds every
// reading, event and gap record until the collector has committed it.
//
// # Writing
//
// Write and WriteEvents are safe for many concurrent callers and return only
// after their records are committed with fsync. Concurrent calls are
// coalesced into one bbolt transaction (group commit): writes arriving
// while a commit is in progress ride on the next one, which starts as soon
// as the previous one ended (with Config.CommitInterval > 0, only after the
// first pending write waited that long for company or
// Config.MaxCommitRecords are pending). Each record gets the edge's next
// sequence number; numbers are persisted and never reused, even when a
// corrupt file is replaced (a floor is kept in a side file, FORMAT.md).
// Pending encoded records are bounded by Config.MaxPendingBytes: beyond it
// writers block, so memory stays bounded under any input rate.
//
// # Lanes and shedding
//
// Readings go to the telemetry lane; events and gap records to the priority
// lane, which the forwarder drains first. The byte budget (Config.MaxBytes)
// covers both lanes. When a commit would exceed it, the oldest readings not
// currently in flight are shed until the queue is ~1.5 % under budget; only
// when no readings are left are the oldest events shed. Gap records are
// never shed. Every shed reading is accounted for in a gap record (sensor,
// time range, count, reason "buffer_budget") that is forwarded like data;
// gap records not yet handed to the forwarder are merged per sensor and
// reason so that long outages produce few of them.
//
// A failed commit (disk full, I/O error) is retried once after shedding
// 1/16 of the budget of the oldest readings into "disk_error" gap records,
// so a full disk makes the queue roll over its own file instead of
// stopping. If the retry fails too, the writers get an error wrapping
// ErrNotStored and keep their records to retry: never a crash, never a
// silent loss.
//
// # Draining: live first
//
// Peek returns a batch of at most n records: first the priority lane
// (oldest first), then readings. Of the readings, up to Config.LiveShare·n
// are the newest queued ones and the rest the oldest ones. With an empty
// backlog that is simply everything in order; after an outage every batch
// carries the latest readings while the backlog drains from its oldest
// end, so operations see live data within one round trip. Records handed
// out by Peek are in flight until Ack (deleted after the collector
// committed them), Release (back to the queue) or DeadLetter; they are
// never shed or handed out twice meanwhile.
//
// # Self-healing
//
// Open reads every page of the file once, where a damaged page can be
// handled (FORMAT.md), then drops those pages from the process's resident
// memory (they stay in the page cache; see releaseMapped). A file that bbolt cannot open or that fails this
// check is renamed to "<file>.corrupt-<UTC time>" and kept
// for inspection, a gap record with reason "queue_corrupt" is queued, and a
// fresh queue is used. A record whose checksum fails when read is deleted
// and accounted for the same way. A file locked by a running agent is not
// corrupt: Open returns ErrLocked.
//
// The on-disk layout is specified in FORMAT.md.
package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Errors returned by the queue.
var (
	// ErrClosed is returned by calls on a closed queue.
	ErrClosed = errors.New("buffer closed")
	// ErrNotStored wraps a commit failure that shedding could not cure
	// (the disk is full even after freeing queue space, or an I/O error):
	// the records of that Write were not stored and not accounted for, so
	// the caller still owns them and should retry (and not acknowledge
	// their MQTT messages meanwhile).
	ErrNotStored = errors.New("records not stored")
	// ErrLocked is returned by Open when another process holds the file.
	ErrLocked = errors.New("queue file is locked by another process")
)

// FileName is the queue's file name inside the agent's data directory.
const FileName = "queue.db"

// formatVersion is stored in the meta bucket; see FORMAT.md.
const formatVersion = 1

var (
	bucketMeta = []byte("meta")
	bucketTel  = []byte("tel")
	bucketPri  = []byte("pri")
	bucketDead = []byte("dead")
	bucketIdx  = []byte("idx")
)

// Keys in the meta bucket.
var (
	metaFormat = []byte("format")
	metaSeq    = []byte("seq")
	metaTelN   = []byte("tel.n")
	metaTelB   = []byte("tel.b")
	metaPriN   = []byte("pri.n")
	metaPriB   = []byte("pri.b")
	metaDeadN  = []byte("dead.n")
	metaDeadB  = []byte("dead.b")
)

// seqReserveBlock is how far ahead of the last used sequence number the
// side file's floor is written: large enough that it is rewritten rarely
// (once per million records), small enough to waste nothing that matters.
const seqReserveBlock = 1 << 20

// maxRunwayHours caps the reported runway when nothing is being ingested
// (ten years: "unbounded" in a JSON-friendly form).
const maxRunwayHours = 87600

// idxResolution is the granularity of the commit-time index: one entry per
// second at most, so a long outage adds ~3,600 small entries an hour rather
// than one per commit; the oldest age is overstated by at most this.
const idxResolution = time.Second

// rateTau is the time constant of the ingest-rate estimate behind runway.
const rateTau = 60 * time.Second

// Options are the run-time dependencies of a queue.
type Options struct {
	// Logger receives lifecycle and loss messages; nil discards them.
	Logger *slog.Logger
	// Registerer receives the queue's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// state is the persisted bookkeeping of the queue (meta bucket).
type state struct {
	seq          uint64
	telN, telB   int64
	priN, priB   int64
	deadN, deadB int64
	// txid is the bbolt transaction the state was read in (not stored):
	// transactions commit in this order, so a newer state always wins.
	txid int
}

func (s *state) total() int64 { return s.telB + s.priB }

type gapKey struct{ reason, sensor string }

// request is one Write or WriteEvents call waiting for its commit.
type request struct {
	buf  []byte // encoded values, back to back
	ends []int  // end offset of each value in buf
	pri  bool   // priority lane (events)
	done chan error
}

// Queue is the durable queue. All methods are safe for concurrent use.
type Queue struct {
	cfg  Config
	path string
	db   *bolt.DB
	log  *slog.Logger
	m    *metrics

	// Writers → committer.
	pmu          sync.Mutex
	pending      []*request
	pendingRecs  int
	pendingBytes int64
	firstAt      time.Time
	space        chan struct{} // closed when pending memory is freed
	closed       bool
	kick         chan struct{}
	full         chan struct{}
	stop         chan struct{}
	loopDone     chan struct{}
	changed      chan struct{}

	// mu guards everything below and is held across any write transaction
	// that sheds or merges gap records, so that Peek never hands out a
	// record that such a transaction is deleting or rewriting.
	mu          sync.Mutex
	st          state
	inflight    map[uint64]struct{}
	openGaps    map[gapKey]uint64
	pendingGaps map[gapKey]wire.Gap
	seqFloor    uint64 // reserved in the side file
	drops       map[string]uint64
	appends     uint64
	commits     uint64
	lastCommit  time.Duration
	rateAt      time.Time
	rateBytes   float64 // exponentially decayed sum of appended bytes
	rateRecs    float64

	// lastIdx is when the commit-time index got its last entry; only the
	// committer uses it.
	lastIdx time.Time

	// onCommit, when set before the first write (benchmarks), is called
	// by the committer after each successful commit.
	onCommit func(d time.Duration, records int)
}

// Open opens (or creates) the queue file at path. A corrupt or unreadable
// file is moved aside and replaced (see the package doc).
func Open(ctx context.Context, path string, cfg Config, opts Options) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open buffer %q: %w", path, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "buffer")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open buffer %q: %w", path, err)
	}
	q := &Queue{
		cfg:         cfg,
		path:        path,
		log:         log,
		space:       make(chan struct{}),
		kick:        make(chan struct{}, 1),
		full:        make(chan struct{}, 1),
		stop:        make(chan struct{}),
		loopDone:    make(chan struct{}),
		changed:     make(chan struct{}, 1),
		inflight:    make(map[uint64]struct{}),
		openGaps:    make(map[gapKey]uint64),
		pendingGaps: make(map[gapKey]wire.Gap),
		drops:       make(map[string]uint64),
		rateAt:      time.Now(),
	}
	db, err := q.openFile(ctx)
	if err != nil {
		return nil, fmt.Errorf("open buffer %q: %w", path, err)
	}
	q.db = db
	if err := q.init(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open buffer %q: %w", path, err)
	}
	q.m = newMetrics(q, opts.Registerer)
	go q.loop()
	log.Info("buffer open", "path", path, "records", q.st.telN+q.st.priN, "bytes", q.st.total(), "seq", q.st.seq)
	return q, nil
}

// openFile opens the bbolt file, moving a corrupt one aside.
func (q *Queue) openFile(ctx context.Context) (*bolt.DB, error) {
	db, err := openChecked(q.path, q.cfg.Check, false)
	if err == nil {
		return db, nil
	}
	if errors.Is(err, ErrLocked) || errors.Is(err, os.ErrPermission) {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	now := time.Now().UTC()
	from := now.UnixNano()
	if fi, serr := os.Stat(q.path); serr == nil {
		from = min(fi.ModTime().UnixNano(), from)
	}
	aside := q.path + ".corrupt-" + now.Format("20060102T150405.000000000Z")
	if rerr := os.Rename(q.path, aside); rerr != nil {
		return nil, fmt.Errorf("cannot move corrupt queue aside (%v): %w", err, rerr)
	}
	q.log.Error("queue file corrupt; moved aside, starting a fresh queue (queued records lost, recorded as a gap)",
		"error", err, "moved_to", aside)
	q.pendingGaps[gapKey{wire.GapCorrupt, ""}] = wire.Gap{From: from, To: now.UnixNano(), Reason: wire.GapCorrupt}
	q.drops[wire.GapCorrupt]++
	db, err = openChecked(q.path, q.cfg.Check, false)
	if err != nil {
		return nil, fmt.Errorf("create fresh queue: %w", err)
	}
	return db, nil
}

// openChecked opens path with bbolt and checks it; it never panics.
//
// The freelist is not synced (bbolt's NoFreelistSync, as etcd does): a
// synced freelist is rewritten whole by every commit, megabytes once an
// outage grew the file to the budget, which would ruin commit latency on
// flash. bbolt then rebuilds the freelist on open by walking every page in
// a goroutine of its own, where a damaged page panics beyond any recover;
// so the file is first opened read-only (no freelist walk) and walked
// here, where a panic is recovered and the file treated as corrupt.
func openChecked(path, check string, readOnly bool) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, fmt.Errorf("bbolt panicked: %v", r)
		}
	}()
	if fi, serr := os.Stat(path); serr == nil && fi.Size() > 0 {
		pre, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, ErrLocked
		}
		if err != nil {
			return nil, err
		}
		err = walkDB(pre)
		_ = pre.Close()
		if err != nil {
			return nil, err
		}
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        time.Second,
		ReadOnly:       readOnly,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, ErrLocked
	}
	if err != nil {
		return nil, err
	}
	if err := checkDB(db, check); err != nil {
		_ = db.Close()
		return nil, err
	}
	// The checks above (and bbolt's freelist rebuild) read every page
	// through the memory map; give those pages back (mapped_linux.go).
	_ = releaseMapped(db) // an optimisation: a failure changes nothing else
	return db, nil
}

// walkDB checks the structure and touches every page through cursors, in
// this goroutine, so that a damaged page panics where openChecked
// recovers. A panic inside View rolls its transaction back first.
func walkDB(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// A new or foreign file: new is fine, foreign is not.
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return errors.New("not a queue file: no meta bucket")
			}
			return nil
		}
		if v := meta.Get(metaFormat); v == nil || string(v) != strconv.Itoa(formatVersion) {
			return fmt.Errorf("unknown format version %q", v)
		}
		for _, name := range [][]byte{bucketMeta, bucketTel, bucketPri, bucketDead, bucketIdx} {
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("bucket %q missing", name)
			}
			err := b.ForEach(func(k, v []byte) error {
				if len(k) == 0 || (name[0] != 'm' && len(k) != 8) {
					return fmt.Errorf("bucket %q: bad key %x", name, k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// checkDB runs bbolt's own consistency check (page accounting) for
// Config.Check "full"; walkDB has already checked the structure.
func checkDB(db *bolt.DB, check string) error {
	if check != CheckFull {
		return nil
	}
	return db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		return first
	})
}

// init creates the buckets, loads the state and writes pending gaps (a
// corrupt file found by openFile).
func (q *Queue) init() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	floor := readSeqFloor(q.path)
	err := q.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		fresh := meta.Get(metaFormat) == nil
		for _, name := range [][]byte{bucketTel, bucketPri, bucketDead, bucketIdx} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		st := readState(meta)
		if fresh {
			if err := meta.Put(metaFormat, []byte(strconv.Itoa(formatVersion))); err != nil {
				return err
			}
			// A fresh file continues above every number handed out before
			// (side-file floor) and above the wall clock in µs, so numbers
			// stay unique even if the side file was lost too.
			st.seq = max(floor, uint64(max(time.Now().UnixMicro(), 0)))
		}
		if err := q.writePendingGaps(tx, &st); err != nil {
			return err
		}
		if err := q.reserveSeq(st.seq); err != nil {
			return err
		}
		q.setState(st)
		return writeState(meta, st)
	})
	if err != nil {
		return err
	}
	clear(q.pendingGaps)
	return nil
}

func readState(meta *bolt.Bucket) state {
	u := func(k []byte) int64 {
		v := meta.Get(k)
		if len(v) != 8 {
			return 0
		}
		return int64(binary.BigEndian.Uint64(v))
	}
	return state{
		txid: meta.Tx().ID(),
		seq:  uint64(u(metaSeq)),
		telN: u(metaTelN), telB: u(metaTelB),
		priN: u(metaPriN), priB: u(metaPriB),
		deadN: u(metaDeadN), deadB: u(metaDeadB),
	}
}

// setState publishes st unless a later transaction's state already was.
// Called with q.mu held.
func (q *Queue) setState(st state) {
	if st.txid >= q.st.txid {
		q.st = st
	}
}

func writeState(meta *bolt.Bucket, st state) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{metaSeq, st.seq},
		{metaTelN, uint64(st.telN)}, {metaTelB, uint64(st.telB)},
		{metaPriN, uint64(st.priN)}, {metaPriB, uint64(st.priB)},
		{metaDeadN, uint64(st.deadN)}, {metaDeadB, uint64(st.deadB)},
	} {
		if err := meta.Put(kv.k, seqKey(kv.v)); err != nil {
			return err
		}
	}
	return nil
}

// seqFloorPath is the side file that survives a corrupt queue file.
func seqFloorPath(path string) string { return path + ".seq" }

func readSeqFloor(path string) uint64 {
	b, err := os.ReadFile(seqFloorPath(path))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(string(trimSpace(b)), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// reserveSeq makes sure the side file's floor is above seq, writing it
// atomically (temp file, fsync, rename) before numbers above the old floor
// are committed. Called with q.mu held or from init/committer.
func (q *Queue) reserveSeq(seq uint64) error {
	if seq < q.seqFloor {
		return nil
	}
	floor := seq + seqReserveBlock
	p := seqFloorPath(q.path)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write sequence floor: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(floor, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return fmt.Errorf("write sequence floor: %w", err)
	}
	q.seqFloor = floor
	return nil
}

// Write appends readings to the telemetry lane and returns after they are
// committed (fsync). It assigns each stored record the next sequence
// number; rs is not retained or modified. If ctx ends first, Write returns
// ctx.Err() and the readings may or may not be stored.
func (q *Queue) Write(ctx context.Context, rs []wire.Reading) error {
	if len(rs) == 0 {
		return nil
	}
	req := &request{ends: make([]int, 0, len(rs)), done: make(chan error, 1)}
	req.buf = make([]byte, 0, len(rs)*(64+len(rs[0].Sensor)+len(rs[0].Model)))
	for i := range rs {
		req.buf = appendReading(req.buf, &rs[i])
		req.ends = append(req.ends, len(req.buf))
	}
	return q.submit(ctx, req)
}

// WriteEvents appends events to the priority lane; otherwise as Write.
func (q *Queue) WriteEvents(ctx context.Context, es []wire.Event) error {
	if len(es) == 0 {
		return nil
	}
	req := &request{pri: true, ends: make([]int, 0, len(es)), done: make(chan error, 1)}
	for i := range es {
		req.buf = appendEvent(req.buf, &es[i])
		req.ends = append(req.ends, len(req.buf))
	}
	return q.submit(ctx, req)
}

func (q *Queue) submit(ctx context.Context, req *request) error {
	size := int64(len(req.buf))
	q.pmu.Lock()
	for !q.closed && q.pendingBytes > 0 && q.pendingBytes+size > q.cfg.MaxPendingBytes {
		ch := q.space
		q.pmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		q.pmu.Lock()
	}
	if q.closed {
		q.pmu.Unlock()
		return ErrClosed
	}
	if len(q.pending) == 0 {
		q.firstAt = time.Now()
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	q.pending = append(q.pending, req)
	q.pendingRecs += len(req.ends)
	q.pendingBytes += size
	if q.pendingRecs >= q.cfg.MaxCommitRecords {
		select {
		case q.full <- struct{}{}:
		default:
		}
	}
	q.pmu.Unlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop is the committer: it gathers pending requests and commits them.
func (q *Queue) loop() {
	defer close(q.loopDone)
	var timer *time.Timer
	for {
		stopping := false
		select {
		case <-q.kick:
		case <-q.stop:
			stopping = true
		}
		q.pmu.Lock()
		wait := time.Until(q.firstAt.Add(q.cfg.CommitInterval))
		enough := q.pendingRecs >= q.cfg.MaxCommitRecords
		q.pmu.Unlock()
		if !stopping && !enough && wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-q.full:
				timer.Stop()
			case <-q.stop:
				timer.Stop()
			}
		}
		q.pmu.Lock()
		reqs := q.pending
		q.pending = nil
		q.pendingRecs = 0
		q.pendingBytes = 0
		close(q.space)
		q.space = make(chan struct{})
		select { // a stale full signal must not skip the next linger
		case <-q.full:
		default:
		}
		q.pmu.Unlock()
		if len(reqs) > 0 {
			q.commit(reqs)
		}
		if stopping {
			q.pmu.Lock()
			left := len(q.pending)
			q.pmu.Unlock()
			if left == 0 {
				return
			}
		}
	}
}

// commit writes reqs in one transaction and answers each request.
func (q *Queue) commit(reqs []*request) {
	start := time.Now()
	var n, bytes int
	for _, r := range reqs {
		n += len(r.ends)
		bytes += len(r.buf) + 8*len(r.ends)
	}
	err := q.tryCommit(reqs, int64(bytes))
	if err != nil {
		q.log.Warn("commit failed; shedding and retrying once", "error", err, "records", n)
		q.m.commitErrors.Inc()
		q.emergencyShed()
		err = q.tryCommit(reqs, int64(bytes))
	}
	if err != nil {
		q.m.commitErrors.Inc()
		q.log.Error("cannot commit to the queue; writers must retry", "error", err, "records", n)
		err = fmt.Errorf("commit %d records: %w: %w", n, ErrNotStored, err)
	} else {
		d := time.Since(start)
		q.mu.Lock()
		q.appends += uint64(n)
		q.commits++
		q.lastCommit = d
		q.decayRate(time.Now())
		q.rateBytes += float64(bytes)
		q.rateRecs += float64(n)
		q.mu.Unlock()
		q.m.appends.Add(float64(n))
		q.m.commits.Inc()
		q.m.commitLatency.Observe(d.Seconds())
		if q.onCommit != nil {
			q.onCommit(d, n)
		}
		select {
		case q.changed <- struct{}{}:
		default:
		}
	}
	for _, r := range reqs {
		r.done <- err
	}
}

// tryCommit runs one write transaction for reqs. It holds q.mu for the
// whole transaction when it may shed or write gap records.
func (q *Queue) tryCommit(reqs []*request, bytes int64) error {
	q.mu.Lock()
	locked := q.st.total()+bytes > q.cfg.MaxBytes || len(q.pendingGaps) > 0
	if !locked {
		q.mu.Unlock()
	}
	var st state
	var wroteGaps map[gapKey]wire.Gap
	err := q.db.Update(func(tx *bolt.Tx) error {
		meta, tel, pri, idx := tx.Bucket(bucketMeta), tx.Bucket(bucketTel), tx.Bucket(bucketPri), tx.Bucket(bucketIdx)
		tel.FillPercent, pri.FillPercent = 1, 1
		st = readState(meta)
		first := st.seq + 1
		wasEmpty := st.telN+st.priN == 0 // then trimIndex left no entry
		keys := make([]byte, 0, 8*(len(reqs)+64))
		for _, r := range reqs {
			off := 0
			for _, end := range r.ends {
				st.seq++
				v := r.buf[off:end]
				off = end
				if len(keys)+8 > cap(keys) {
					keys = make([]byte, 0, cap(keys)*2)
				}
				keys = putKey(keys, st.seq)
				k := keys[len(keys)-8:]
				if r.pri {
					if err := pri.Put(k, v); err != nil {
						return err
					}
					st.priN++
					st.priB += int64(8 + len(v))
				} else {
					if err := tel.Put(k, v); err != nil {
						return err
					}
					st.telN++
					st.telB += int64(8 + len(v))
				}
			}
		}
		if now := time.Now(); wasEmpty || now.Sub(q.lastIdx) >= idxResolution {
			if err := idx.Put(seqKey(first), binary.AppendVarint(nil, now.UnixNano())); err != nil {
				return err
			}
			tx.OnCommit(func() { q.lastIdx = now })
		}
		if locked {
			if len(q.pendingGaps) > 0 {
				wroteGaps = maps.Clone(q.pendingGaps)
				if err := q.writePendingGaps(tx, &st); err != nil {
					return err
				}
			}
			if st.total() > q.cfg.MaxBytes {
				if err := q.shed(tx, &st, q.cfg.MaxBytes-q.cfg.MaxBytes/64, wire.GapBudget); err != nil {
					return err
				}
			}
		}
		if st.seq >= q.seqFloor {
			if err := q.reserveSeq(st.seq); err != nil {
				q.log.Warn("cannot persist sequence floor", "error", err)
			}
		}
		return writeState(meta, st)
	})
	if !locked {
		q.mu.Lock()
	}
	if err == nil {
		q.setState(st)
		for k := range wroteGaps {
			delete(q.pendingGaps, k)
		}
	}
	q.mu.Unlock()
	return err
}

// writePendingGaps merges the in-memory gaps into the priority lane.
// Called with q.mu held inside a write transaction.
func (q *Queue) writePendingGaps(tx *bolt.Tx, st *state) error {
	for _, g := range q.pendingGaps {
		if err := q.mergeGap(tx, st, g); err != nil {
			return err
		}
	}
	return nil
}

// mergeGap adds g to the open (not yet peeked) gap record of the same
// sensor and reason, or writes a new one. Called with q.mu held.
func (q *Queue) mergeGap(tx *bolt.Tx, st *state, g wire.Gap) error {
	pri := tx.Bucket(bucketPri)
	key := gapKey{g.Reason, g.Sensor}
	if seq, ok := q.openGaps[key]; ok {
		k := seqKey(seq)
		if old := pri.Get(k); old != nil {
			var o wire.Gap
			if decodeGap(old, &o) == nil {
				o.Count += g.Count
				o.From = min(o.From, g.From)
				o.To = max(o.To, g.To)
				v := appendGap(nil, &o)
				if err := pri.Put(k, v); err != nil {
					return err
				}
				st.priB += int64(len(v) - len(old))
				return nil
			}
		}
	}
	st.seq++
	v := appendGap(nil, &g)
	if err := pri.Put(seqKey(st.seq), v); err != nil {
		return err
	}
	st.priN++
	st.priB += int64(8 + len(v))
	q.openGaps[key] = st.seq
	return nil
}

// shed deletes the oldest readings (then events) not in flight until the
// lanes hold at most target bytes, and merges gap records for them.
// Called with q.mu held inside a write transaction.
func (q *Queue) shed(tx *bolt.Tx, st *state, target int64, reason string) error {
	tel, pri := tx.Bucket(bucketTel), tx.Bucket(bucketPri)
	gaps := make(map[string]*wire.Gap)
	var lostReadings, lostEvents, corrupt uint64
	add := func(sensor []byte, t int64, count uint64) {
		g, ok := gaps[string(sensor)]
		if !ok {
			g = &wire.Gap{Sensor: string(sensor), From: t, To: t, Reason: reason}
			gaps[g.Sensor] = g
		}
		g.From, g.To = min(g.From, t), max(g.To, t)
		g.Count += count
	}
	// Collect, then delete: deleting under a moving cursor is not safe.
	var victims [][]byte
	var excess = st.total() - target
	c := tel.Cursor()
	for k, v := c.First(); k != nil && excess > 0; k, v = c.Next() {
		if _, busy := q.inflight[keySeq(k)]; busy {
			continue
		}
		sensor, t, err := readingSensorTime(v)
		if err != nil {
			corrupt++
		} else {
			add(sensor, t, 1)
			lostReadings++
		}
		victims = append(victims, append([]byte(nil), k...))
		excess -= int64(len(k) + len(v))
		st.telN--
		st.telB -= int64(len(k) + len(v))
	}
	for _, k := range victims {
		if err := tel.Delete(k); err != nil {
			return err
		}
	}
	victims = victims[:0]
	if excess > 0 {
		c := pri.Cursor()
		for k, v := c.First(); k != nil && excess > 0; k, v = c.Next() {
			if _, busy := q.inflight[keySeq(k)]; busy || len(v) == 0 || v[0] != recEvent {
				continue
			}
			var e wire.Event
			if decodeEvent(v, &e) != nil {
				corrupt++
			} else {
				add([]byte(e.Sensor), e.Time, 0)
				lostEvents++
			}
			victims = append(victims, append([]byte(nil), k...))
			excess -= int64(len(k) + len(v))
			st.priN--
			st.priB -= int64(len(k) + len(v))
		}
		for _, k := range victims {
			if err := pri.Delete(k); err != nil {
				return err
			}
		}
	}
	for _, g := range gaps {
		if err := q.mergeGap(tx, st, *g); err != nil {
			return err
		}
	}
	if err := trimIndex(tx); err != nil {
		return err
	}
	if corrupt > 0 {
		if err := q.mergeGap(tx, st, wire.Gap{From: 0, To: time.Now().UnixNano(), Count: corrupt, Reason: wire.GapCorrupt}); err != nil {
			return err
		}
	}
	// Counted on success only would be more exact; a rolled-back shed is
	// retried by the next commit and counted again, so count after commit.
	tx.OnCommit(func() {
		q.drops[reason] += lostReadings
		if lostEvents > 0 {
			q.drops[reason+"_events"] += lostEvents
		}
		if corrupt > 0 {
			q.drops[wire.GapCorrupt] += corrupt
		}
		q.m.drops.WithLabelValues(reason).Add(float64(lostReadings))
		if lostEvents > 0 {
			q.m.drops.WithLabelValues(reason + "_events").Add(float64(lostEvents))
		}
		q.log.Error("queue over budget: shed oldest records", "reason", reason,
			"readings", lostReadings, "events", lostEvents, "sensors", len(gaps))
	})
	return nil
}

// emergencyShed frees space after a failed commit (disk full): it sheds
// 1/16 of the budget (at least 1 MiB) of the oldest readings, recording
// them as disk_error gaps. Its own failure is only logged.
func (q *Queue) emergencyShed() {
	q.mu.Lock()
	defer q.mu.Unlock()
	err := q.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st := readState(meta)
		target := max(st.total()-max(q.cfg.MaxBytes/16, 1<<20), 0)
		if err := q.shed(tx, &st, target, wire.GapDiskError); err != nil {
			return err
		}
		if err := writeState(meta, st); err != nil {
			return err
		}
		tx.OnCommit(func() { q.setState(st) })
		return nil
	})
	if err != nil {
		q.log.Error("cannot shed to free space", "error", err)
	}
}

// decayRate ages the rate estimate to now. Called with q.mu held.
func (q *Queue) decayRate(now time.Time) {
	dt := now.Sub(q.rateAt)
	if dt <= 0 {
		return
	}
	f := math.Exp(-dt.Seconds() / rateTau.Seconds())
	q.rateBytes *= f
	q.rateRecs *= f
	q.rateAt = now
}

// Available returns how many queued records are not in flight: what a
// Peek could hand out now. It reads no file.
func (q *Queue) Available() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return max(0, int(q.st.telN+q.st.priN)-len(q.inflight))
}

// Changed returns a channel that receives after commits, so a consumer can
// wait for new records instead of polling.
func (q *Queue) Changed() <-chan struct{} { return q.changed }

// Path returns the queue file's path.
func (q *Queue) Path() string { return q.path }

// Close stops accepting writes, commits what is pending and closes the
// file. Records in flight stay queued.
func (q *Queue) Close() error {
	q.pmu.Lock()
	if q.closed {
		q.pmu.Unlock()
		return ErrClosed
	}
	q.closed = true
	close(q.space)
	q.space = make(chan struct{})
	q.pmu.Unlock()
	close(q.stop)
	<-q.loopDone
	q.m.unregister()
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("close buffer %q: %w", q.path, err)
	}
	return nil
}
