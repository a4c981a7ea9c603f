// Package memlimit chooses sm-edge's soft memory limit (the Go runtime's
// runtime/debug.SetMemoryLimit, the same knob as GOMEMLIMIT).
//
// With `memory_limit` unset the limit is 90 % of the cgroup's memory.max
// when the agent runs under one (a systemd unit with MemoryMax=, a
// container limit), and none otherwise. Under a cgroup limit the garbage
// collector then works harder as the heap nears it instead of the kernel's
// OOM killer ending the agent; if the live heap itself exceeds it, Go's GC
// CPU limiter caps the collector at about half the CPU and memory grows past
// the soft limit (slow, but no crash and no loss: the queue is durable).
//
// There is deliberately no tighter default. Without a limit the collector
// lets the heap grow to twice the live data (GOGC=100); a limit closer to
// the live heap saves that memory but costs throughput, because every
// reading leaves garbage behind (paho's packets, the queue's and the
// forwarder's batches) and less headroom means more collections. Measured
// at 20,000 sensors (live heap ~50 MB, make bench, same binary, same run):
// a limit of 1.5x the live heap cut steady-state RSS from ~170 to ~98 MiB
// but halved backlog ingest (66–75k -> 33k readings/s one reading per
// message, 432–457k -> 200–207k batched), below the throughput
// goals; 1.25x doubled the CPU per reading (BenchmarkFootprint). A site
// that must fit a small box sets `memory_limit` (or MemoryMax=) and
// accepts the CPU.
//
// An explicit limit (`memory_limit: N` bytes) or GOMEMLIMIT in the
// environment replaces the automatic one; `memory_limit: -1` sets none even
// under a cgroup limit.
package memlimit

import (
	"bufio"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupShare is the part of the cgroup's memory.max the limit may use;
// the rest is for memory the Go runtime does not count (the binary's and
// the queue file's mapped pages, page cache charged to the cgroup).
const cgroupShare = 0.9

// None is the memory_limit value for "no limit".
const None = -1

// Auto returns the automatic limit for a cgroup memory.max of cgroup bytes
// (0: none), or 0 for no limit.
func Auto(cgroup int64) int64 {
	if cgroup <= 0 {
		return 0
	}
	return int64(float64(cgroup) * cgroupShare)
}

// Apply sets the limit the configuration asks for: configured > 0 is a
// fixed limit, None none, 0 automatic (Auto of this process's cgroup). It
// returns the limit in force, 0 for none. GOMEMLIMIT in the environment
// wins over the automatic limit (the runtime already applied it).
func Apply(configured int64, log *slog.Logger) int64 {
	switch {
	case configured > 0:
		debug.SetMemoryLimit(configured)
		log.Info("soft memory limit set", "memory_limit", configured)
		return configured
	case configured == None:
		debug.SetMemoryLimit(math.MaxInt64)
		log.Info("no soft memory limit (memory_limit: -1)")
		return 0
	case os.Getenv("GOMEMLIMIT") != "":
		lim := debug.SetMemoryLimit(-1)
		log.Info("soft memory limit from GOMEMLIMIT", "memory_limit", lim)
		if lim == math.MaxInt64 {
			return 0
		}
		return lim
	}
	cg := CgroupMax()
	lim := Auto(cg)
	if lim == 0 {
		debug.SetMemoryLimit(math.MaxInt64)
		log.Info("no soft memory limit: no cgroup memory limit found (set memory_limit to bound the heap)")
		return 0
	}
	debug.SetMemoryLimit(lim)
	log.Info("soft memory limit from the cgroup's memory.max", "memory_limit", lim, "cgroup_memory_max", cg)
	return lim
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
