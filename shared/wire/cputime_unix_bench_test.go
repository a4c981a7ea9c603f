//go:build unix

package wire

import "syscall"

// processCPU returns the user+system CPU time the process has used, in ns.
// Benchmarks report it beside wall time because the shared benchmark
// machine is often overloaded, which inflates wall time but hardly CPU time.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
