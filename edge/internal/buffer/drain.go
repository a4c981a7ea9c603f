package buffer

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Batch is a set of queued records handed out by Peek. Its records stay in
// the queue, in flight, until the batch is passed to Ack, Release or
// DeadLetter. The slices are owned by the caller.
type Batch struct {
	// ID is unique per queue content; a retried batch keeps it.
	ID       string
	Readings []wire.Reading
	Events   []wire.Event
	Gaps     []wire.Gap
	telSeqs  []uint64
	evSeqs   []uint64
	gapSeqs  []uint64
}

// Len returns the number of records in b.
func (b *Batch) Len() int { return len(b.Readings) + len(b.Events) + len(b.Gaps) }

// SeqRange returns the lowest and highest sequence number in b.
func (b *Batch) SeqRange() (first, last uint64) {
	first = math.MaxUint64
	for _, s := range [][]uint64{b.telSeqs, b.evSeqs, b.gapSeqs} {
		for _, x := range s {
			first, last = min(first, x), max(last, x)
		}
	}
	if last == 0 {
		first = 0
	}
	return first, last
}

// Peek returns up to max records that are not in flight: the priority
// lane (events and gaps) oldest first, then readings, of which up to
// Config.LiveShare·room are the newest and the rest the oldest (see the
// package doc). It returns nil when nothing is available. Records whose
// checksum fails are removed and recorded as a "queue_corrupt" gap.
func (q *Queue) Peek(ctx context.Context, max int) (*Batch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max < 1 {
		max = 1
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	b := &Batch{}
	var badTel, badPri [][]byte
	err := q.db.View(func(tx *bolt.Tx) error {
		pri, tel := tx.Bucket(bucketPri), tx.Bucket(bucketTel)
		c := pri.Cursor()
		for k, v := c.First(); k != nil && b.Len() < max; k, v = c.Next() {
			seq := keySeq(k)
			if _, busy := q.inflight[seq]; busy {
				continue
			}
			switch {
			case len(v) > 0 && v[0] == recEvent:
				var e wire.Event
				if decodeEvent(v, &e) != nil {
					badPri = append(badPri, slices.Clone(k))
					continue
				}
				e.Seq = seq
				b.Events = append(b.Events, e)
				b.evSeqs = append(b.evSeqs, seq)
			default:
				var g wire.Gap
				if decodeGap(v, &g) != nil {
					badPri = append(badPri, slices.Clone(k))
					continue
				}
				g.Seq = seq
				b.Gaps = append(b.Gaps, g)
				b.gapSeqs = append(b.gapSeqs, seq)
				delete(q.openGaps, gapKey{g.Reason, g.Sensor})
			}
		}
		room := max - b.Len()
		if room <= 0 {
			return nil
		}
		live := int(math.Ceil(float64(room) * q.cfg.LiveShare))
		c = tel.Cursor()
		// Newest first from the tail…
		var tail []wire.Reading
		var tailSeqs []uint64
		lowTail := uint64(math.MaxUint64)
		for k, v := c.Last(); k != nil && len(tail) < live; k, v = c.Prev() {
			seq := keySeq(k)
			if _, busy := q.inflight[seq]; busy {
				continue
			}
			lowTail = seq
			var r wire.Reading
			if decodeReading(v, &r) != nil {
				badTel = append(badTel, slices.Clone(k))
				continue
			}
			r.Seq = seq
			tail = append(tail, r)
			tailSeqs = append(tailSeqs, seq)
		}
		// …then the oldest from the head, up to where the tail began.
		for k, v := c.First(); k != nil && len(b.Readings)+len(tail) < room; k, v = c.Next() {
			seq := keySeq(k)
			if seq >= lowTail {
				break
			}
			if _, busy := q.inflight[seq]; busy {
				continue
			}
			var r wire.Reading
			if decodeReading(v, &r) != nil {
				badTel = append(badTel, slices.Clone(k))
				continue
			}
			r.Seq = seq
			b.Readings = append(b.Readings, r)
			b.telSeqs = append(b.telSeqs, seq)
		}
		slices.Reverse(tail)
		slices.Reverse(tailSeqs)
		b.Readings = append(b.Readings, tail...)
		b.telSeqs = append(b.telSeqs, tailSeqs...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peek buffer: %w", err)
	}
	if len(badTel)+len(badPri) > 0 {
		q.removeCorrupt(badTel, badPri)
	}
	if b.Len() == 0 {
		return nil, nil
	}
	for _, seqs := range [][]uint64{b.telSeqs, b.evSeqs, b.gapSeqs} {
		for _, s := range seqs {
			q.inflight[s] = struct{}{}
		}
	}
	first, last := b.SeqRange()
	b.ID = strconv.FormatUint(first, 36) + "-" + strconv.FormatUint(last, 36) + "-" + strconv.Itoa(b.Len())
	return b, nil
}

// removeCorrupt deletes records that failed their checksum and accounts
// for them in a gap. Called with q.mu held.
func (q *Queue) removeCorrupt(tel, pri [][]byte) {
	err := q.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st := readState(meta)
		var n uint64
		for _, lane := range []struct {
			b    *bolt.Bucket
			keys [][]byte
			tel  bool
		}{{tx.Bucket(bucketTel), tel, true}, {tx.Bucket(bucketPri), pri, false}} {
			for _, k := range lane.keys {
				v := lane.b.Get(k)
				if v == nil {
					continue
				}
				size := int64(len(k) + len(v))
				if err := lane.b.Delete(k); err != nil {
					return err
				}
				if lane.tel {
					st.telN--
					st.telB -= size
					n++
				} else {
					st.priN--
					st.priB -= size
				}
			}
		}
		if err := q.mergeGap(tx, &st, wire.Gap{To: time.Now().UnixNano(), Count: n, Reason: wire.GapCorrupt}); err != nil {
			return err
		}
		if err := writeState(meta, st); err != nil {
			return err
		}
		tx.OnCommit(func() {
			q.setState(st)
			q.drops[wire.GapCorrupt] += n
			q.m.drops.WithLabelValues(wire.GapCorrupt).Add(float64(n))
		})
		return nil
	})
	if err != nil {
		q.log.Error("cannot remove corrupt records", "error", err)
		return
	}
	q.log.Error("removed corrupt records from the queue", "readings", len(tel), "other", len(pri))
}

// Ack deletes b's records: the collector has committed them.
func (q *Queue) Ack(ctx context.Context, b *Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	err := q.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st := readState(meta)
		if err := deleteSeqs(tx, &st, b.telSeqs, b.evSeqs, b.gapSeqs); err != nil {
			return err
		}
		if err := writeState(meta, st); err != nil {
			return err
		}
		tx.OnCommit(func() { q.setState(st) })
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack batch %s: %w", b.ID, err)
	}
	q.release(b)
	return nil
}

// deleteSeqs deletes records by lane and trims the commit-time index.
// One cursor seek per record (not a Get and a Delete): Ack is the drain's
// hot path.
func deleteSeqs(tx *bolt.Tx, st *state, telSeqs []uint64, priSeqs ...[]uint64) error {
	del := func(b *bolt.Bucket, seqs []uint64, n, size *int64) error {
		c := b.Cursor()
		var key [8]byte
		for _, s := range seqs {
			binary.BigEndian.PutUint64(key[:], s)
			k, v := c.Seek(key[:])
			if k == nil || keySeq(k) != s {
				continue // already shed or deleted
			}
			*n--
			*size -= int64(8 + len(v))
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	}
	if err := del(tx.Bucket(bucketTel), telSeqs, &st.telN, &st.telB); err != nil {
		return err
	}
	for _, seqs := range priSeqs {
		if err := del(tx.Bucket(bucketPri), seqs, &st.priN, &st.priB); err != nil {
			return err
		}
	}
	return trimIndex(tx)
}

// trimIndex deletes commit-time index entries that no queued record needs:
// an entry is needed by the records from its key up to the next entry.
func trimIndex(tx *bolt.Tx) error {
	minSeq, ok := oldestSeq(tx)
	idx := tx.Bucket(bucketIdx)
	var dead [][]byte
	c := idx.Cursor()
	for k, _ := c.First(); k != nil; {
		nk, _ := c.Next()
		if ok && nk != nil && keySeq(nk) > minSeq {
			break
		}
		if ok && nk == nil {
			break // the last entry is needed by minSeq
		}
		dead = append(dead, slices.Clone(k))
		k = nk
	}
	for _, k := range dead {
		if err := idx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// oldestSeq returns the lowest sequence number queued in either lane.
func oldestSeq(tx *bolt.Tx) (uint64, bool) {
	var min uint64 = math.MaxUint64
	for _, name := range [][]byte{bucketTel, bucketPri} {
		if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
			min = minU(min, keySeq(k))
		}
	}
	return min, min != math.MaxUint64
}

func minU(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

// Release returns b's records to the queue without deleting them, for
// example when a batch is abandoned to be re-peeked in another shape.
func (q *Queue) Release(b *Batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.release(b)
}

func (q *Queue) release(b *Batch) {
	for _, seqs := range [][]uint64{b.telSeqs, b.evSeqs, b.gapSeqs} {
		for _, s := range seqs {
			delete(q.inflight, s)
		}
	}
}

// DeadLetter moves a batch the collector refused as undecodable out of the
// queue: the encoded body and the reason are kept in the bounded
// dead-letter bucket (oldest evicted beyond Config.DeadLetterMaxBytes), the
// records are deleted, and each sensor's readings are accounted for in a
// gap record with reason "dead_letter". Gap records in a batch that also
// holds readings or events stay queued (they are sent again, alone first,
// since the priority lane goes first): losing them would lose the account
// of earlier losses, and a batch of gaps alone that is refused again is
// then dead-lettered, so nothing is retried forever.
func (q *Queue) DeadLetter(ctx context.Context, b *Batch, body []byte, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	gaps := make(map[string]*wire.Gap)
	for _, r := range b.Readings {
		g, ok := gaps[r.Sensor]
		if !ok {
			g = &wire.Gap{Sensor: r.Sensor, From: r.Time, To: r.Time, Reason: wire.GapRejected}
			gaps[r.Sensor] = g
		}
		g.From, g.To = min(g.From, r.Time), max(g.To, r.Time)
		g.Count++
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	err := q.db.Update(func(tx *bolt.Tx) error {
		meta, dead := tx.Bucket(bucketMeta), tx.Bucket(bucketDead)
		st := readState(meta)
		gapSeqs := b.gapSeqs
		if len(b.Readings)+len(b.Events) > 0 {
			gapSeqs = nil
		}
		if err := deleteSeqs(tx, &st, b.telSeqs, b.evSeqs, gapSeqs); err != nil {
			return err
		}
		for _, g := range gaps {
			if err := q.mergeGap(tx, &st, *g); err != nil {
				return err
			}
		}
		v := appendDead(nil, &deadRecord{At: time.Now().UnixNano(), Reason: reason, Body: body})
		st.seq++
		if err := dead.Put(seqKey(st.seq), v); err != nil {
			return err
		}
		st.deadN++
		st.deadB += int64(8 + len(v))
		var evict [][]byte
		c := dead.Cursor()
		over := st.deadB - q.cfg.DeadLetterMaxBytes
		for k, v := c.First(); k != nil && over > 0 && st.deadN-int64(len(evict)) > 1; k, v = c.Next() {
			evict = append(evict, slices.Clone(k))
			over -= int64(len(k) + len(v))
			st.deadB -= int64(len(k) + len(v))
		}
		for _, k := range evict {
			if err := dead.Delete(k); err != nil {
				return err
			}
		}
		st.deadN -= int64(len(evict))
		if err := q.reserveSeq(st.seq); err != nil {
			q.log.Warn("cannot persist sequence floor", "error", err)
		}
		if err := writeState(meta, st); err != nil {
			return err
		}
		tx.OnCommit(func() {
			q.setState(st)
			q.drops[wire.GapRejected] += uint64(len(b.Readings))
			q.m.drops.WithLabelValues(wire.GapRejected).Add(float64(len(b.Readings)))
			if len(b.Events) > 0 {
				q.drops[wire.GapRejected+"_events"] += uint64(len(b.Events))
				q.m.drops.WithLabelValues(wire.GapRejected + "_events").Add(float64(len(b.Events)))
			}
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("dead-letter batch %s: %w", b.ID, err)
	}
	q.release(b)
	q.log.Error("batch refused by the collector moved to the dead-letter bucket",
		"batch", b.ID, "reason", reason, "readings", len(b.Readings), "events", len(b.Events), "gaps", len(b.Gaps))
	return nil
}
