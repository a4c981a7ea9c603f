package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Write methods for readings (Options.WriteMethod). All three store each
// (sensor, time) at most once and count the rows actually inserted.
const (
	// WriteCopy COPYs the batch straight into readings inside a savepoint
	// (binary format, no per-reading allocation). A duplicate key aborts
	// the COPY; the batch is then rolled back to the savepoint and written
	// by WriteStaging. Duplicates are rare (retries, replays), so almost
	// every batch goes at raw COPY speed. This is the default; see the
	// benchmark in ingest for the measured figures.
	WriteCopy = "copy"
	// WriteStaging COPYs into a per-connection temporary staging table and
	// moves rows with INSERT … SELECT … ON CONFLICT DO NOTHING.
	WriteStaging = "staging"
	// WriteUnnest sends typed arrays and inserts from unnest(…) ON CONFLICT
	// DO NOTHING, in one round trip.
	WriteUnnest = "unnest"
)

// DeadLetter is one rejected item of a batch, for the dead-letter table.
type DeadLetter struct {
	// Item is wire.ItemReading, wire.ItemEvent or wire.ItemGap.
	Item   string
	Index  int
	Sensor string
	Reason string
	// Raw is the item's raw values as a JSON object.
	Raw []byte
}

// BatchWrite is one validated batch, ready to store.
type BatchWrite struct {
	EdgeID   string
	BatchID  string
	FirstSeq uint64
	LastSeq  uint64
	// Readings are all readings of the batch; Nums[i] is the sensor num of
	// Readings[i], or 0 when the reading was rejected and is not stored.
	Readings []wire.Reading
	Nums     []int32
	// Events and Gaps are the valid ones only.
	Events []wire.Event
	Gaps   []wire.Gap
	// NumEvents and NumGaps count all events and gaps of the batch.
	NumEvents, NumGaps int
	// Rejected goes to the dead-letter table; Rejections is its summary
	// for the response (same order).
	Rejected   []DeadLetter
	Rejections []wire.Rejection
	// OnEvents, when set, is called inside the batch's transaction with
	// the events stored now (not those already stored by an earlier
	// delivery), after readings, gaps and events are written and before
	// the commit. An error fails the whole batch.
	OnEvents EventsHook
}

// EventsHook processes newly stored events inside the batch transaction
// tx (a connection in a transaction: it must neither commit nor roll
// back, but may use savepoints). The alert lifecycle is one.
type EventsHook func(ctx context.Context, tx *pgx.Conn, edgeID string, events []wire.Event) error

// BatchResult is the outcome of WriteBatch. Counts are over all items
// (readings, events and gaps): Accepted were stored now; Duplicate were
// already stored (same sensor and time for readings, same edge sequence
// number for events and gaps); Rejected went to the dead-letter table.
type BatchResult struct {
	Accepted   int
	Duplicate  int
	Rejected   int
	Rejections []wire.Rejection
	// Replayed is true when the batch (same edge and batch id) had already
	// been stored; the counts are those of the first time.
	Replayed bool
	// ReadingsAccepted and ReadingsDuplicate split the readings' share.
	ReadingsAccepted, ReadingsDuplicate int
	// CopyFallback is true when WriteCopy met a duplicate and fell back.
	CopyFallback bool
}

// WriteBatch stores a validated batch in one transaction: batch record,
// readings (deduplicated), dead letters, gaps, events and the edge's
// last-seen time. A batch whose (edge, batch id) is
// already stored changes nothing and returns the stored result with
// Replayed set; concurrent deliveries of one batch are serialised by the
// batch record's key.
func (db *DB) WriteBatch(ctx context.Context, w *BatchWrite) (BatchResult, error) {
	if w.FirstSeq > math.MaxInt64 || w.LastSeq > math.MaxInt64 {
		return BatchResult{}, fmt.Errorf("%w: batch %q sequence range above 2^63-1", ErrInvalid, w.BatchID)
	}
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return BatchResult{}, fmt.Errorf("cannot get a connection for batch %q: %w", w.BatchID, err)
	}
	tx := pc.Conn()
	committed := false
	defer func() {
		if !committed {
			// Roll back even when ctx has expired; a connection left in a
			// transaction is closed by the pool instead of reused.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, err := tx.Exec(rctx, "ROLLBACK"); err != nil {
				tx.Close(rctx)
			}
			cancel()
		}
		pc.Release()
	}()
	edgeNum, err := db.edgeNum(ctx, tx, w.EdgeID)
	if err != nil {
		return BatchResult{}, err
	}

	// BEGIN, the batch record and the readings savepoint go in one round
	// trip; so do the closing statements and COMMIT below. A batch is
	// three round trips in the common case: this, the COPY, the commit.
	var claim pgx.Batch
	claim.Queue(`BEGIN`)
	claim.Queue(`INSERT INTO edge_batches (edge_id, batch_id, first_seq, last_seq, readings, events, gaps)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (edge_id, batch_id) DO NOTHING`,
		w.EdgeID, w.BatchID, int64(w.FirstSeq), int64(w.LastSeq), len(w.Readings), w.NumEvents, w.NumGaps)
	claim.Queue(`SAVEPOINT readings_copy`)
	br := tx.SendBatch(ctx, &claim)
	_, err = br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return BatchResult{}, fmt.Errorf("cannot record batch %q: %w", w.BatchID, err)
	}
	if tag.RowsAffected() == 0 {
		return db.storedResult(ctx, tx, w)
	}
	var res BatchResult
	if err := db.writeReadings(ctx, tx, w, edgeNum, &res); err != nil {
		return BatchResult{}, err
	}
	if err := writeDeadLetters(ctx, tx, w); err != nil {
		return BatchResult{}, err
	}
	acc, dup, fresh, err := writeGapsEvents(ctx, tx, w)
	if err != nil {
		return BatchResult{}, err
	}
	if w.OnEvents != nil && len(fresh) > 0 {
		if err := w.OnEvents(ctx, tx, w.EdgeID, fresh); err != nil {
			return BatchResult{}, fmt.Errorf("cannot process events of batch %q: %w", w.BatchID, err)
		}
	}
	res.Accepted = res.ReadingsAccepted + acc
	res.Duplicate = res.ReadingsDuplicate + dup
	res.Rejected = len(w.Rejected)
	res.Rejections = w.Rejections
	var rej []byte
	if len(w.Rejections) > 0 {
		if rej, err = json.Marshal(w.Rejections); err != nil {
			return BatchResult{}, fmt.Errorf("encode rejections of batch %q: %w", w.BatchID, err)
		}
	}
	// The batch outcome, the edge's last-seen time and COMMIT go in one
	// round trip. Sensors' last values are not stored: queries take them
	// from readings (see ListSensors).
	var fin pgx.Batch
	fin.Queue(`UPDATE edge_batches SET accepted = $3, duplicate = $4, rejected = $5, rejections = $6
		WHERE edge_id = $1 AND batch_id = $2`, w.EdgeID, w.BatchID, res.Accepted, res.Duplicate, res.Rejected, rej)
	fin.Queue(`UPDATE edges SET last_seen = GREATEST(last_seen, now()) WHERE id = $1`, w.EdgeID)
	fin.Queue(`COMMIT`)
	fbr := tx.SendBatch(ctx, &fin)
	var last pgconn.CommandTag
	for range fin.Len() {
		if last, err = fbr.Exec(); err != nil {
			break
		}
	}
	if cerr := fbr.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return BatchResult{}, fmt.Errorf("cannot commit batch %q: %w", w.BatchID, err)
	}
	// COMMIT of a failed transaction answers ROLLBACK without an error.
	if last.String() != "COMMIT" {
		return BatchResult{}, fmt.Errorf("cannot commit batch %q: transaction rolled back", w.BatchID)
	}
	committed = true
	return res, nil
}

func (db *DB) storedResult(ctx context.Context, tx *pgx.Conn, w *BatchWrite) (BatchResult, error) {
	res := BatchResult{Replayed: true}
	var rej []byte
	err := tx.QueryRow(ctx, `SELECT accepted, duplicate, rejected, rejections FROM edge_batches WHERE edge_id = $1 AND batch_id = $2`,
		w.EdgeID, w.BatchID).Scan(&res.Accepted, &res.Duplicate, &res.Rejected, &rej)
	if err != nil {
		return BatchResult{}, fmt.Errorf("cannot read stored outcome of batch %q: %w", w.BatchID, err)
	}
	if rej != nil {
		if err := json.Unmarshal(rej, &res.Rejections); err != nil {
			return BatchResult{}, fmt.Errorf("decode stored rejections of batch %q: %w", w.BatchID, err)
		}
	}
	return res, nil
}

// readingColumns is the column list of readings for COPY and INSERT.
const readingColumns = `sensor_id, time, value, quality, flags, score, model, edge_num, seq`

func (db *DB) writeReadings(ctx context.Context, tx *pgx.Conn, w *BatchWrite, edgeNum int32, res *BatchResult) error {
	valid := 0
	for _, n := range w.Nums {
		if n != 0 {
			valid++
		}
	}
	if valid == 0 {
		return nil
	}
	var inserted int64
	var err error
	switch db.opts.WriteMethod {
	case WriteUnnest:
		inserted, err = db.insertUnnest(ctx, tx, w, edgeNum)
	case WriteStaging:
		inserted, err = db.insertStaging(ctx, tx, w, edgeNum)
	default:
		if db.preferStaging(w) {
			inserted, err = db.insertStaging(ctx, tx, w, edgeNum)
			break
		}
		inserted, err = db.insertCopy(ctx, tx, w, edgeNum, res)
		if res.CopyFallback {
			db.dedupHint.Store(dedupHintBatches)
		}
	}
	if err != nil {
		return err
	}
	res.ReadingsAccepted = int(inserted)
	res.ReadingsDuplicate = valid - int(inserted)
	return nil
}

// dedupHintBatches: after a direct COPY met a duplicate, this many of the
// following batches go straight to the staging path. Duplicates come in
// runs (an edge replaying its backlog after a crash), and a failed COPY
// costs a wasted write of the whole batch.
const dedupHintBatches = 16

// preferStaging reports whether WriteCopy should skip the direct COPY:
// a recent batch had duplicates, or the edge marked readings as replayed.
func (db *DB) preferStaging(w *BatchWrite) bool {
	for {
		h := db.dedupHint.Load()
		if h <= 0 {
			break
		}
		if db.dedupHint.CompareAndSwap(h, h-1) {
			return true
		}
	}
	for i := range w.Readings {
		if w.Readings[i].Flags&wire.FlagReplayed != 0 {
			return true
		}
	}
	return false
}

// copyBuf holds a reusable binary COPY stream.
type copyBuf struct{ b bytes.Buffer }

func (db *DB) getBuf() *copyBuf {
	if v := db.bufs.Get(); v != nil {
		return v.(*copyBuf)
	}
	return &copyBuf{}
}

func (db *DB) putBuf(c *copyBuf) {
	if c.b.Cap() > 64<<20 { // do not keep huge buffers around
		return
	}
	c.b.Reset()
	db.bufs.Put(c)
}

func (db *DB) insertCopy(ctx context.Context, tx *pgx.Conn, w *BatchWrite, edgeNum int32, res *BatchResult) (int64, error) {
	buf := db.getBuf()
	defer db.putBuf(buf)
	encodeReadingsCopy(&buf.b, w, edgeNum)
	// WriteBatch took the savepoint readings_copy just before.
	tag, err := tx.PgConn().CopyFrom(ctx, bytes.NewReader(buf.b.Bytes()),
		`COPY readings (`+readingColumns+`) FROM STDIN WITH (FORMAT binary)`)
	if err == nil {
		return tag.RowsAffected(), nil
	}
	if !isUniqueViolation(err) {
		return 0, fmt.Errorf("cannot copy readings of batch %q: %w", w.BatchID, err)
	}
	if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT readings_copy`); err != nil {
		return 0, fmt.Errorf("cannot write readings of batch %q: %w", w.BatchID, err)
	}
	res.CopyFallback = true
	return db.copyStaged(ctx, tx, w, buf.b.Bytes())
}

func (db *DB) insertStaging(ctx context.Context, tx *pgx.Conn, w *BatchWrite, edgeNum int32) (int64, error) {
	buf := db.getBuf()
	defer db.putBuf(buf)
	encodeReadingsCopy(&buf.b, w, edgeNum)
	return db.copyStaged(ctx, tx, w, buf.b.Bytes())
}

// copyStaged COPYs an encoded stream into the connection's temporary
// staging table (emptied at every commit) and moves it into readings,
// skipping rows whose (sensor, time) exists.
func (db *DB) copyStaged(ctx context.Context, tx *pgx.Conn, w *BatchWrite, stream []byte) (int64, error) {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS readings_staging
		(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
		return 0, fmt.Errorf("cannot create staging table: %w", err)
	}
	if _, err := tx.PgConn().CopyFrom(ctx, bytes.NewReader(stream),
		`COPY readings_staging (`+readingColumns+`) FROM STDIN WITH (FORMAT binary)`); err != nil {
		return 0, fmt.Errorf("cannot stage readings of batch %q: %w", w.BatchID, err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO readings (`+readingColumns+`)
		SELECT `+readingColumns+` FROM readings_staging ON CONFLICT (sensor_id, time) DO NOTHING`)
	if err != nil {
		return 0, fmt.Errorf("cannot insert readings of batch %q: %w", w.BatchID, err)
	}
	return tag.RowsAffected(), nil
}

func (db *DB) insertUnnest(ctx context.Context, tx *pgx.Conn, w *BatchWrite, edgeNum int32) (int64, error) {
	n := 0
	for _, num := range w.Nums {
		if num != 0 {
			n++
		}
	}
	var (
		nums   = make([]int32, 0, n)
		times  = make([]time.Time, 0, n)
		vals   = make([]float64, 0, n)
		quals  = make([]int16, 0, n)
		flags  = make([]int32, 0, n)
		scores = make([]float32, 0, n)
		models = make([]string, 0, n)
		seqs   = make([]int64, 0, n)
	)
	for i := range w.Readings {
		if w.Nums[i] == 0 {
			continue
		}
		r := &w.Readings[i]
		nums = append(nums, w.Nums[i])
		times = append(times, time.UnixMicro(floorDiv(r.Time, 1000)))
		vals = append(vals, r.Value)
		quals = append(quals, int16(r.Quality))
		flags = append(flags, int32(r.Flags))
		scores = append(scores, r.Score)
		models = append(models, r.Model)
		seqs = append(seqs, int64(r.Seq))
	}
	tag, err := tx.Exec(ctx, `INSERT INTO readings (`+readingColumns+`)
		SELECT u.s, u.t, u.v, u.q, u.f, u.sc, NULLIF(u.m, ''), $9, u.seq
		FROM unnest($1::int4[], $2::timestamptz[], $3::float8[], $4::int2[], $5::int4[], $6::float4[], $7::text[], $8::int8[])
			AS u(s, t, v, q, f, sc, m, seq)
		ON CONFLICT (sensor_id, time) DO NOTHING`,
		nums, times, vals, quals, flags, scores, models, seqs, edgeNum)
	if err != nil {
		return 0, fmt.Errorf("cannot insert readings of batch %q: %w", w.BatchID, err)
	}
	return tag.RowsAffected(), nil
}

// pgEpochMicros is 2000-01-01T00:00:00Z in Unix microseconds, the epoch of
// PostgreSQL's binary timestamps.
const pgEpochMicros = 946684800 * 1_000_000

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// encodeReadingsCopy writes the stored readings of w as a PostgreSQL binary
// COPY stream (header, one tuple per reading, trailer) for readingColumns.
// Times are truncated to microseconds, PostgreSQL's resolution, so two
// readings of one sensor less than 1 µs apart are duplicates.
func encodeReadingsCopy(b *bytes.Buffer, w *BatchWrite, edgeNum int32) {
	b.Grow(19 + 2 + len(w.Readings)*96)
	b.WriteString("PGCOPY\n\xff\r\n\x00")
	var scratch [8]byte
	put32 := func(v uint32) { binary.BigEndian.PutUint32(scratch[:4], v); b.Write(scratch[:4]) }
	put64 := func(v uint64) { binary.BigEndian.PutUint64(scratch[:8], v); b.Write(scratch[:8]) }
	put16 := func(v uint16) { binary.BigEndian.PutUint16(scratch[:2], v); b.Write(scratch[:2]) }
	put32(0) // flags
	put32(0) // header extension length
	for i := range w.Readings {
		if w.Nums[i] == 0 {
			continue
		}
		r := &w.Readings[i]
		put16(9)
		put32(4)
		put32(uint32(w.Nums[i]))
		put32(8)
		put64(uint64(floorDiv(r.Time, 1000) - pgEpochMicros))
		put32(8)
		put64(math.Float64bits(r.Value))
		put32(2)
		put16(uint16(r.Quality))
		put32(4)
		put32(uint32(r.Flags))
		put32(4)
		put32(math.Float32bits(r.Score))
		if r.Model == "" {
			put32(math.MaxUint32) // -1: NULL
		} else {
			put32(uint32(len(r.Model)))
			b.WriteString(r.Model)
		}
		put32(4)
		put32(uint32(edgeNum))
		put32(8)
		put64(r.Seq)
	}
	put16(math.MaxUint16) // -1: trailer
}

func writeDeadLetters(ctx context.Context, tx *pgx.Conn, w *BatchWrite) error {
	if len(w.Rejected) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"rejected_readings"},
		[]string{"edge_id", "batch_id", "item", "item_index", "sensor", "reason", "raw"},
		pgx.CopyFromSlice(len(w.Rejected), func(i int) ([]any, error) {
			d := &w.Rejected[i]
			return []any{w.EdgeID, w.BatchID, d.Item, int32(d.Index), d.Sensor, d.Reason, string(d.Raw)}, nil
		}))
	if err != nil {
		return fmt.Errorf("cannot store %d dead letters of batch %q: %w", len(w.Rejected), w.BatchID, err)
	}
	return nil
}

func unixNano(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// writeGapsEvents stores gaps and events and returns the counts and the
// events stored now (fresh), in batch order.
func writeGapsEvents(ctx context.Context, tx *pgx.Conn, w *BatchWrite) (accepted, duplicate int, fresh []wire.Event, err error) {
	if len(w.Gaps) == 0 && len(w.Events) == 0 {
		return 0, 0, nil, nil
	}
	var b pgx.Batch
	for i := range w.Gaps {
		g := &w.Gaps[i]
		b.Queue(`INSERT INTO gaps (edge_id, batch_id, sensor, from_time, to_time, count, reason, seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (edge_id, seq) WHERE seq > 0 DO NOTHING`,
			w.EdgeID, w.BatchID, g.Sensor, unixNano(g.From), unixNano(g.To), int64(g.Count), g.Reason, int64(g.Seq))
	}
	for i := range w.Events {
		e := &w.Events[i]
		b.Queue(`INSERT INTO events (edge_id, batch_id, sensor, asset, kind, state, severity, rule, time,
				window_start, window_end, value, score, threshold, model, seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
			ON CONFLICT (edge_id, seq) WHERE seq > 0 DO NOTHING`,
			w.EdgeID, w.BatchID, e.Sensor, e.Asset, int16(e.Kind), int16(e.State), int16(e.Severity), e.Rule,
			unixNano(e.Time), unixNano(e.WindowStart), unixNano(e.WindowEnd), e.Value, e.Score, e.Threshold, e.Model, int64(e.Seq))
	}
	br := tx.SendBatch(ctx, &b)
	for i := range b.Len() {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return 0, 0, nil, fmt.Errorf("cannot store gaps and events of batch %q: %w", w.BatchID, err)
		}
		if tag.RowsAffected() == 1 {
			accepted++
			if i >= len(w.Gaps) {
				fresh = append(fresh, w.Events[i-len(w.Gaps)])
			}
		} else {
			duplicate++
		}
	}
	if err := br.Close(); err != nil {
		return 0, 0, nil, fmt.Errorf("cannot store gaps and events of batch %q: %w", w.BatchID, err)
	}
	return accepted, duplicate, fresh, nil
}
