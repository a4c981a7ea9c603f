package buffer

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// mappedRSS returns the resident bytes of this process's mappings of path
// (from /proc/self/smaps).
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	var rss int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.Contains(fields[0], "-") && len(fields) >= 5 {
			in = len(fields) >= 6 && fields[len(fields)-1] == path
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			rss += kb << 10
		}
	}
	return rss
}

// The start-up check reads every page of the file through bbolt's memory
// map; Open gives those pages back, so a reopened queue file that an
// outage grew is not resident in the agent.
func TestOpenReleasesMappedPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	q := openQueue(t, path, testConfig())
	for i := range 40 {
		if err := q.Write(t.Context(), readings("site/line/pump/vib", i*2000, 2000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 8<<20 {
		t.Fatalf("queue file is only %d bytes; the test needs a bigger one", fi.Size())
	}
	q = openQueue(t, path, testConfig()) // CheckFull: reads the file twice
	rss := mappedRSS(t, path)
	t.Logf("file %d bytes, resident after Open %d bytes", fi.Size(), rss)
	if rss > fi.Size()/8 {
		t.Errorf("%d of the file's %d bytes are resident after Open; want the start-up check's pages released", rss, fi.Size())
	}
	// Still readable through the map: the pages come back from the page cache.
	rs, _, _ := drainAll(t, q, 5000)
	if len(rs) != 80000 {
		t.Errorf("drained %d readings, want 80000", len(rs))
	}
}
