package buffer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// envHelper makes the test binary act as a writer process for
// TestKill9Durability: it appends forever and prints each acknowledged
// reading ("sensor time") after its Write returned.
const envHelper = "SM_BUFFER_KILL_HELPER"

func TestKillHelperProcess(t *testing.T) {
	dir := os.Getenv(envHelper)
	if dir == "" {
		t.Skip("helper process for TestKill9Durability")
	}
	round, _ := strconv.Atoi(os.Getenv(envHelper + "_ROUND"))
	q, err := Open(context.Background(), filepath.Join(dir, FileName), Default(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			sensor := fmt.Sprintf("w%d", w)
			for i := 0; ; i += 4 {
				rs := make([]wire.Reading, 4)
				for j := range rs {
					rs[j] = wire.Reading{Sensor: sensor, Time: int64(round)<<32 | int64(i+j), Value: float64(i)}
				}
				if err := q.Write(context.Background(), rs); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(4)
				}
				mu.Lock()
				for j := range rs {
					fmt.Fprintf(out, "%s %d\n", sensor, rs[j].Time)
				}
				_ = out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestKill9Durability appends from a separate process with group commit
// and SIGKILLs it repeatedly: every reading whose Write returned survives,
// and no sequence number is used twice.
func TestKill9Durability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	acked := map[string]bool{}
	const rounds, killAfter = 6, 3000
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), envHelper+"="+dir, envHelper+"_ROUND="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			var sensor string
			var tm int64
			if _, err := fmt.Sscanf(line, "%s %d", &sensor, &tm); err != nil {
				continue // a line cut by the kill
			}
			acked[fmt.Sprint(sensor, "/", tm)] = true
			n++
			if n == killAfter {
				_ = cmd.Process.Kill() // SIGKILL, mid-stream
			}
		}
		_ = cmd.Wait()
		if n < killAfter {
			t.Fatalf("round %d: helper died after %d acknowledged readings", round, n)
		}
	}
	q := openQueue(t, filepath.Join(dir, FileName), testConfig())
	rs, _, gs := drainAll(t, q, 10000)
	if len(gs) != 0 {
		t.Errorf("gap records after kills: %+v", gs)
	}
	have := map[string]bool{}
	seqs := map[uint64]bool{}
	for _, r := range rs {
		k := fmt.Sprint(r.Sensor, "/", r.Time)
		if have[k] {
			t.Fatalf("reading %s stored twice", k)
		}
		if seqs[r.Seq] {
			t.Fatalf("sequence number %d used twice", r.Seq)
		}
		have[k], seqs[r.Seq] = true, true
	}
	lost := 0
	for k := range acked {
		if !have[k] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged readings lost across %d kill -9s", lost, len(acked), rounds)
	}
	t.Logf("%d acknowledged readings (%d stored, including unacknowledged in-flight ones) survived %d kill -9s",
		len(acked), len(rs), rounds)
}
