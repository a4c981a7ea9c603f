// Package memlimit chooses sm-edge's soft memory limit (the Go runtime's
// runtime/debug.SetMemoryLimit, the same knob as GOMEMLIMIT).
//
// Without a limit the garbage collector lets the heap grow to twice the
// live data (GOGC=100): at 20,000 sensors that doubles the scoring state,
// which is most of sm-edge's memory. With `memory_limit` unset, Run keeps
// the limit at
//
//	max(Floor, live heap × 1.5), and at most 90 % of the cgroup's memory.max
//
// re-evaluated every few seconds. A site whose live heap is under half the
// floor never reaches it (GOGC=100 gives it a smaller heap); above that the
// collector keeps half the live heap as headroom (like GOGC=50) instead of
// all of it. Less headroom costs CPU fast, because every reading leaves
// ~2 KB of garbage (paho's packets, the queue's and the forwarder's
// batches): at 20,000 sensors and a 57 MB live heap, CPU per reading was
// 28 µs without a limit, 32 µs at 1.75×, 38 µs at 1.5× and 65 µs at 1.25×
// (BenchmarkFootprint, edge/internal/agent). A fixed limit below the live
// heap would make the collector run back to back until Go's GC CPU limiter
// caps it at about half the CPU: safe (memory still grows past the limit,
// nothing crashes) but slow; a limit that follows the live heap never gets
// there by itself, however big the site. Inside a container or a systemd
// unit with MemoryMax, the limit stays under 90 % of that, so the
// collector works harder before the kernel's OOM killer would.
//
// An explicit limit (`memory_limit: N` bytes) or GOMEMLIMIT in the
// environment replaces all of this; `memory_limit: -1` sets no limit.
package memlimit

import (
	"bufio"
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// DefaultFloor is the automatic limit's lowest value: the 64 MiB
// footprint goal. The limit counts the Go runtime's memory (heap, stacks,
// runtime metadata), so a floor well above the runtime's own few MiB also
// keeps a small site's collector from running too often.
const DefaultFloor = 64 << 20

// headroomNum/headroomDen: above the floor the limit is live × 3/2.
const (
	headroomNum = 3
	headroomDen = 2
)

// interval is how often the live heap is checked. The limit only needs to
// follow the number of sensors, which changes slowly.
const interval = 5 * time.Second

// cgroupShare is the part of the cgroup's memory.max the limit may use;
// the rest is for memory the Go runtime does not count (the queue file's
// mapped pages, page cache charged to the cgroup).
const cgroupShare = 0.9

// None is the memory_limit value for "no limit".
const None = -1

// Target is the automatic limit for a live heap of live bytes, with floor
// and the cgroup's memory.max (0: none).
func Target(live, floor, cgroup int64) int64 {
	want := max(floor, live/headroomDen*headroomNum)
	if cgroup > 0 {
		want = min(want, int64(float64(cgroup)*cgroupShare))
	}
	return want
}

// Apply sets the limit the configuration asks for: configured > 0 is a
// fixed limit, None none, 0 automatic. It returns true when the limit is
// automatic and Run should keep it up to date. GOMEMLIMIT in the
// environment wins over the automatic limit (the runtime already applied
// it).
func Apply(configured int64, log *slog.Logger) (auto bool) {
	switch {
	case configured > 0:
		debug.SetMemoryLimit(configured)
		log.Info("soft memory limit set", "memory_limit", configured)
		return false
	case configured == None:
		debug.SetMemoryLimit(math.MaxInt64)
		log.Info("no soft memory limit (memory_limit: -1)")
		return false
	case os.Getenv("GOMEMLIMIT") != "":
		log.Info("soft memory limit from GOMEMLIMIT", "memory_limit", debug.SetMemoryLimit(-1))
		return false
	}
	cg := CgroupMax()
	lim := Target(0, DefaultFloor, cg)
	debug.SetMemoryLimit(lim)
	log.Info("automatic soft memory limit", "memory_limit", lim, "cgroup_memory_max", cg)
	return true
}

// Run keeps the automatic limit at Target of the current live heap until
// ctx ends. Call it only when Apply returned true.
func Run(ctx context.Context, log *slog.Logger) {
	cg := CgroupMax()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(interval)
	defer t.Stop()
	raised := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		live := int64(s[0].Value.Uint64())
		want := Target(live, DefaultFloor, cg)
		cur := debug.SetMemoryLimit(-1)
		if d := want - cur; d > cur/16 || -d > cur/16 {
			debug.SetMemoryLimit(want)
			if want > DefaultFloor && !raised {
				log.Info("live heap above two thirds of the default memory limit; the limit follows it at 1.5x", "live_heap", live, "memory_limit", want)
			}
			raised = want > DefaultFloor
		}
	}
}

// CgroupMax returns the memory limit of this process's cgroup (v2
// memory.max, or v1 memory.limit_in_bytes), or 0 when there is none or it
// cannot be read.
func CgroupMax() int64 {
	return cgroupMax("/proc/self/cgroup", "/sys/fs/cgroup")
}

func cgroupMax(procFile, root string) int64 {
	f, err := os.Open(procFile)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// v2: "0::/system.slice/sm-edge.service"; v1: "4:memory:/docker/…".
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			if n := readLimit(filepath.Join(root, parts[2], "memory.max")); n > 0 {
				return n
			}
		case strings.Contains(","+parts[1]+",", ",memory,"):
			if n := readLimit(filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes")); n > 0 {
				return n
			}
		}
	}
	return 0
}

// readLimit reads a cgroup limit file; 0 for "max", an absurd v1 "no
// limit" value, or anything unreadable.
func readLimit(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 {
		return 0
	}
	return n
}
