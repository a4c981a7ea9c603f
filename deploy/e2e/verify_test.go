//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// result is one row of the final table.
type result struct {
	name          string
	published     int
	stored        int
	duplicates    int
	gapAccounted  int
	lost          int
	spurious      int // stored readings that were never published
	rejected      int
	deduped       int // redelivered readings the collector recognised and ignored
	gapMismatch   int // shed readings no gap record of their sensor covers, or vice versa
	p50, p99, max time.Duration
	note          string
}

// counts is what the database holds for the scenario.
func counts(ctx context.Context, conn *pgx.Conn, edgeID string) (stored, gaps int, err error) {
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM readings),
		(SELECT coalesce(sum(count), 0) FROM gaps WHERE edge_id = $1)`, edgeID).Scan(&stored, &gaps)
	return stored, gaps, err
}

// settle waits until the database accounts for every published reading
// (stored + gap-accounted = published) and the edge's queue is empty, then
// compares the stored readings with the published ones one by one.
func settle(t *testing.T, name, dbURL string, e *edge, pub *publication, timeout time.Duration) result {
	t.Helper()
	published := pub.set()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	var conn *pgx.Conn
	connect := func() bool {
		if conn != nil && !conn.IsClosed() {
			return true
		}
		c, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return false
		}
		conn = c
		return true
	}
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	var stored, gaps int
	complete := testenv.Poll(timeout, 50*time.Millisecond, func() bool {
		if !connect() {
			return false
		}
		var err error
		stored, gaps, err = counts(ctx, conn, e.id)
		if err != nil {
			conn.Close(ctx)
			return false
		}
		return stored+gaps >= len(published)
	})
	if complete {
		// The edge has nothing left to send: the counts are final.
		testenv.WaitFor(t, timeout, "the edge's queue to be empty", func() bool { return e.backlog() == 0 })
	} else {
		t.Errorf("timed out after %s waiting for stored + gap-accounted (%d + %d) to reach %d published; edge queue: %v",
			timeout, stored, gaps, len(published), e.queueStats())
	}
	if !connect() {
		t.Fatal("cannot connect to the database")
	}
	r := result{name: name, published: len(published)}
	rows, err := conn.Query(ctx, `SELECT s.id, r.time FROM readings r JOIN sensors s ON s.num = r.sensor_id`)
	if err != nil {
		t.Fatalf("read readings: %v", err)
	}
	seen := make(map[key]int, len(published))
	for rows.Next() {
		var id string
		var ts time.Time
		if err := rows.Scan(&id, &ts); err != nil {
			t.Fatalf("scan: %v", err)
		}
		k := key{id, ts.UnixMicro()}
		seen[k]++
		r.stored++
		if seen[k] == 2 {
			r.duplicates++
		}
		if _, ok := published[k]; !ok {
			r.spurious++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read readings: %v", err)
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(count), 0) FROM gaps WHERE edge_id = $1`, e.id).Scan(&r.gapAccounted); err != nil {
		t.Fatalf("read gaps: %v", err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM rejected_readings`).Scan(&r.rejected); err != nil {
		t.Fatalf("read rejected_readings: %v", err)
	}
	missing := 0
	var examples []string
	for k := range published {
		if seen[k] == 0 {
			missing++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s@%s", k.sensor, time.UnixMicro(k.us).UTC().Format("15:04:05.000000")))
			}
		}
	}
	if missing > r.gapAccounted {
		t.Logf("%d published readings are not stored, e.g. %v", missing, examples)
	}
	// Readings not stored are lost unless a gap record accounts for them.
	r.lost = missing - r.gapAccounted
	r.gapMismatch = matchGaps(ctx, t, conn, e.id, published, seen)
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(duplicate), 0) FROM edge_batches WHERE edge_id = $1`, e.id).Scan(&r.deduped); err != nil {
		t.Fatalf("read edge_batches: %v", err)
	}
	var p50, p99, pmax float64
	if err := conn.QueryRow(ctx, `SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 0),
			coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY d), 0), coalesce(max(d), 0)
		FROM (SELECT extract(epoch FROM e2e_written_at - time)::float8 AS d FROM readings) x`).Scan(&p50, &p99, &pmax); err != nil {
		t.Fatalf("latency: %v", err)
	}
	r.p50 = time.Duration(p50 * float64(time.Second))
	r.p99 = time.Duration(p99 * float64(time.Second))
	r.max = time.Duration(pmax * float64(time.Second))
	return r
}

// check fails the test unless the result is exact: nothing lost, nothing
// twice, nothing stored that was not published, nothing rejected.
func check(t *testing.T, r result) {
	t.Helper()
	if r.lost != 0 || r.duplicates != 0 || r.spurious != 0 || r.rejected != 0 || r.gapMismatch != 0 || r.stored+r.gapAccounted != r.published {
		t.Errorf("%s: published %d, stored %d, duplicates %d, gap-accounted %d, lost %d, spurious %d, rejected %d, gap mismatches %d",
			r.name, r.published, r.stored, r.duplicates, r.gapAccounted, r.lost, r.spurious, r.rejected, r.gapMismatch)
	}
}

// table renders the results.
func table(rs []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %9s %9s %10s %13s %6s %8s %8s %8s  %s\n", "scenario", "published", "stored", "duplicates", "gap-accounted", "lost", "deduped", "p50", "p99", "note")
	for _, r := range rs {
		fmt.Fprintf(&b, "%-20s %9d %9d %10d %13d %6d %8d %8s %8s  %s\n", r.name, r.published, r.stored, r.duplicates,
			r.gapAccounted, r.lost, r.deduped, round(r.p50), round(r.p99), r.note)
	}
	return b.String()
}

func round(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second).String()
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}

// connect opens a connection to the scenario's database, closed when the
// test ends.
func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// matchGaps checks that the gap records describe exactly the readings that
// were published and not stored: every such reading lies in a gap record of
// its own sensor, and each sensor's gap counts add up to its missing
// readings. It returns the number of readings that do not match.
func matchGaps(ctx context.Context, t *testing.T, conn *pgx.Conn, edgeID string, published map[key]struct{}, seen map[key]int) int {
	t.Helper()
	type gap struct{ from, to int64 }
	rows, err := conn.Query(ctx, `SELECT sensor, from_time, to_time, count FROM gaps WHERE edge_id = $1`, edgeID)
	if err != nil {
		t.Fatalf("read gaps: %v", err)
	}
	gaps := map[string][]gap{}
	counted := map[string]int{}
	for rows.Next() {
		var sensor string
		var from, to time.Time
		var n int
		if err := rows.Scan(&sensor, &from, &to, &n); err != nil {
			t.Fatalf("scan gap: %v", err)
		}
		gaps[sensor] = append(gaps[sensor], gap{from.UnixMicro(), to.UnixMicro()})
		counted[sensor] += n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read gaps: %v", err)
	}
	missing := map[string]int{}
	mismatch := 0
	for k := range published {
		if seen[k] > 0 {
			continue
		}
		missing[k.sensor]++
		covered := false
		for _, g := range gaps[k.sensor] {
			if g.from <= k.us && k.us <= g.to {
				covered = true
				break
			}
		}
		if !covered && len(gaps) > 0 {
			mismatch++
		}
	}
	for sensor, n := range counted {
		if d := n - missing[sensor]; d != 0 {
			t.Logf("sensor %q: gap records count %d readings, %d are missing", sensor, n, missing[sensor])
			mismatch += max(d, -d)
		}
	}
	return mismatch
}
