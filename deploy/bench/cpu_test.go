//go:build bench

package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat;
// 100 on every Linux architecture sm-edge is built for.
const clockTicks = 100

// cpuOf returns the CPU time (user + system) a running process has used,
// or 0 when it cannot be read. On a shared machine the CPU a stage costs
// is steadier than its wall-clock rate.
func cpuOf(p *testenv.Process) time.Duration {
	pid := p.PID()
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields count from
	// after its closing parenthesis. utime and stime are fields 14, 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(u+st) * time.Second / clockTicks
}

// syscallsOf returns the read and write system calls a running process
// has made (/proc/PID/io syscr and syscw), or zeros.
func syscallsOf(p *testenv.Process) (reads, writes int64) {
	pid := p.PID()
	if pid == 0 {
		return 0, 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}
