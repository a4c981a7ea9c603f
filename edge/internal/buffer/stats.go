package buffer

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Stats is a snapshot of the queue.
type Stats struct {
	// Path is the queue file.
	Path string `json:"path"`
	// Records and Bytes count what waits to be forwarded (both lanes).
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// Readings is the telemetry lane; Priority holds events and gaps.
	Readings      int64 `json:"readings"`
	ReadingsBytes int64 `json:"readings_bytes"`
	Priority      int64 `json:"priority"`
	PriorityBytes int64 `json:"priority_bytes"`
	// DeadLetters are batches the collector refused as undecodable.
	DeadLetters     int64 `json:"dead_letters"`
	DeadLetterBytes int64 `json:"dead_letter_bytes"`
	// MaxBytes is the budget; FileBytes the bbolt file's size.
	MaxBytes  int64 `json:"max_bytes"`
	FileBytes int64 `json:"file_bytes"`
	// LastSeq is the last sequence number handed out.
	LastSeq uint64 `json:"last_seq"`
	// Oldest is when the oldest queued record was committed (zero when the
	// queue is empty); OldestAge is its age.
	Oldest    time.Time     `json:"oldest,omitzero"`
	OldestAge time.Duration `json:"oldest_age_ns"`
	// Since this process opened the queue:
	Appends           uint64            `json:"appends"`
	Commits           uint64            `json:"commits"`
	LastCommitLatency time.Duration     `json:"last_commit_latency_ns"`
	Drops             map[string]uint64 `json:"drops,omitempty"`
	InFlight          int               `json:"in_flight"`
	// BytesPerSecond and ReadingsPerSecond are the current ingest rates
	// (exponentially weighted over about a minute).
	BytesPerSecond   float64 `json:"bytes_per_second"`
	RecordsPerSecond float64 `json:"records_per_second"`
	// RunwayHours is how long an outage the queue can absorb at the
	// current rate before it must shed: the smaller of the budget left and
	// the free disk space, divided by BytesPerSecond; capped at ten years.
	RunwayHours float64 `json:"runway_hours"`
}

// Stats returns a snapshot. It reads the file briefly (oldest record).
func (q *Queue) Stats() Stats {
	now := time.Now()
	q.mu.Lock()
	q.decayRate(now)
	s := Stats{
		Path:              q.path,
		MaxBytes:          q.cfg.MaxBytes,
		Appends:           q.appends,
		Commits:           q.commits,
		LastCommitLatency: q.lastCommit,
		Drops:             maps.Clone(q.drops),
		InFlight:          len(q.inflight),
		BytesPerSecond:    q.rateBytes / rateTau.Seconds(),
		RecordsPerSecond:  q.rateRecs / rateTau.Seconds(),
	}
	st := q.st
	q.mu.Unlock()
	fillState(&s, st)
	_ = q.db.View(func(tx *bolt.Tx) error {
		s.FileBytes = tx.Size()
		s.Oldest = oldestCommit(tx)
		return nil
	})
	if !s.Oldest.IsZero() {
		s.OldestAge = max(now.Sub(s.Oldest), 0)
	}
	s.RunwayHours = runway(q.path, s)
	return s
}

func fillState(s *Stats, st state) {
	s.Readings, s.ReadingsBytes = st.telN, st.telB
	s.Priority, s.PriorityBytes = st.priN, st.priB
	s.Records, s.Bytes = st.telN+st.priN, st.total()
	s.DeadLetters, s.DeadLetterBytes = st.deadN, st.deadB
	s.LastSeq = st.seq
}

// oldestCommit looks up the commit time of the oldest queued record in the
// commit-time index: the entry with the greatest key ≤ its sequence number.
func oldestCommit(tx *bolt.Tx) time.Time {
	minSeq, ok := oldestSeq(tx)
	if !ok {
		return time.Time{}
	}
	c := tx.Bucket(bucketIdx).Cursor()
	k, v := c.Seek(seqKey(minSeq))
	if k == nil {
		k, v = c.Last()
	} else if keySeq(k) > minSeq {
		k, v = c.Prev()
	}
	if k == nil {
		return time.Time{}
	}
	ns, n := binary.Varint(v)
	if n <= 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func runway(path string, s Stats) float64 {
	left := float64(max(s.MaxBytes-s.Bytes, 0))
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err == nil {
		left = math.Min(left, float64(fs.Bavail)*float64(fs.Bsize))
	}
	if s.BytesPerSecond <= 0 {
		return maxRunwayHours
	}
	return math.Min(left/s.BytesPerSecond/3600, maxRunwayHours)
}

// Inspect reads the stats of a queue file that no running agent holds
// (read-only; `sm-edge buffer stats`). Rates and drops are those of a
// running process and are zero here.
func Inspect(path string) (Stats, error) {
	db, err := openChecked(path, CheckQuick, true)
	if err != nil {
		return Stats{}, fmt.Errorf("inspect buffer %q: %w", path, err)
	}
	defer db.Close()
	s := Stats{Path: path, MaxBytes: -1}
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		fillState(&s, readState(meta))
		s.FileBytes = tx.Size()
		s.Oldest = oldestCommit(tx)
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("inspect buffer %q: %w", path, err)
	}
	if !s.Oldest.IsZero() {
		s.OldestAge = max(time.Since(s.Oldest), 0)
	}
	return s, nil
}
