package buffer

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// smallDisk mounts a tmpfs of the given size for the test, or skips when
// mounting is not permitted (needs root; CI containers often allow it).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestDiskFull fills a real 1 MiB file system with a budget far above it:
// the queue sheds its oldest readings to make room (or, when even that
// fails, returns ErrNotStored and stores nothing), never panics or wedges,
// accounts for every shed reading in disk_error gap records, and
// delivered + gap-counted equals everything stored.
func TestDiskFull(t *testing.T) {
	dir := smallDisk(t, "1m")
	cfg := testConfig()
	cfg.MaxBytes = 64 << 20 // the budget is larger than the disk
	q := openQueue(t, filepath.Join(dir, FileName), cfg)
	ctx := t.Context()
	written, dropped := 0, 0
	for i := 0; i < 100000; i += 200 {
		err := q.Write(ctx, readings("s", i, 200))
		written += 200
		switch {
		case err == nil:
		case errors.Is(err, ErrNotStored):
			dropped++
		default:
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if q.Stats().Drops[wire.GapDiskError] == 0 {
		out, _ := exec.Command("df", "-k", dir).CombinedOutput()
		t.Fatalf("the disk never filled: %+v\n%s", q.Stats(), out)
	}
	// Drain what is there (frees pages), then writes work again and the
	// pending gaps reach the queue.
	var got []wire.Reading
	var gaps []wire.Gap
	for round := 0; round < 50; round++ {
		rs, _, gs := drainAll(t, q, 500)
		got, gaps = append(got, rs...), append(gaps, gs...)
		err := q.Write(ctx, readings("after", round, 1))
		written++
		if err == nil && round > 0 && len(q.Stats().Drops) > 0 && len(q.pendingGaps) == 0 {
			break
		}
		if err != nil && !errors.Is(err, ErrNotStored) {
			t.Fatal(err)
		}
	}
	rs, _, gs := drainAll(t, q, 500)
	got, gaps = append(got, rs...), append(gaps, gs...)
	var lost uint64
	for _, g := range gaps {
		if g.Reason != wire.GapDiskError {
			t.Errorf("unexpected gap %+v", g)
		}
		lost += g.Count
	}
	if lost == 0 {
		t.Error("no disk_error gap records")
	}
	if got := uint64(len(got)) + lost; got != uint64(written) {
		t.Errorf("delivered %d + gap-accounted %d = %d, want exactly %d written", len(rs), lost, got, written)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Error(err)
	}
	t.Logf("written %d, delivered %d, lost to the full disk %d (%d writes dropped)", written, uint64(written)-lost, lost, dropped)

	// Phase 2: a disk filled by someone else and a write larger than the
	// file's free pages: even shedding cannot make room, so Write fails
	// with ErrNotStored and records nothing (the caller keeps and retries
	// the readings); once space is back the queue works as before.
	before := q.Stats()
	junk, err := os.Create(filepath.Join(dir, "junk"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := junk.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	_ = junk.Close()
	if err := q.Write(ctx, readings("p2", 0, 40000)); !errors.Is(err, ErrNotStored) {
		t.Fatalf("a write larger than the full disk: %v, want ErrNotStored", err)
	}
	if err := os.Remove(junk.Name()); err != nil {
		t.Fatal(err)
	}
	if err := q.Write(ctx, readings("p2", 0, 200)); err != nil {
		t.Fatalf("write after space came back: %v", err)
	}
	rs, _, gaps = drainAll(t, q, 500)
	var shedNow uint64
	for _, g := range gaps {
		shedNow += g.Count
	}
	if got := uint64(len(rs)) + shedNow; got != 200 {
		t.Errorf("phase 2: delivered %d + gap-accounted %d, want exactly the 200 stored", len(rs), shedNow)
	}
	if d := q.Stats().Drops[wire.GapDiskError] - before.Drops[wire.GapDiskError]; d != shedNow {
		t.Errorf("phase 2: drops grew by %d, gaps account for %d", d, shedNow)
	}
}
