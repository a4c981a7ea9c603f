// Package bench holds the system benchmarks behind `make bench`: one run
// that starts the real sm-edge and sm-collector binaries against the real
// PostgreSQL and a private no-drop Mosquitto on loopback, measures each
// stage next to a baseline measured in the same run (a bare paho
// subscriber, raw pgx COPY into the same table, the edge's live rate), runs
// the package micro benchmarks, and prints one markdown table.
//
// The test carries the build tag bench and is not part of `make test`:
//
//	make build && go test -count=1 -v -tags bench -run TestBench -timeout 40m ./deploy/bench
//
// A full run takes about 6 minutes on the 2-core development machine.
// BENCH_QUICK=1 (or -short) runs a smoke version of about 1.5 minutes
// with smaller volumes; BENCH_DRAIN_N sets the number of buffered readings
// of the backlog-drain stage (default 5,000,000, quick 100,000); BENCH_OUT
// names a file that receives the table as well; BENCH_MICRO=0 skips the
// micro benchmarks; BENCH_BIN names a directory holding other sm-edge and
// sm-collector builds (unstripped ones for perf). BENCH_OVERLOAD sets the
// factor of the sustained rate that the collector-overload stage offers
// (default 2), BENCH_OVERLOAD_FOR for how long (default 30s). Stages are
// subtests: -run 'TestBench/collector-overload' runs one alone. The
// end-to-end stage logs a per-second trace (published, committed,
// forwarded, queued, the collector's database time) with -v. Method and the latest table are in
// BENCHMARKS.md at the repository root.
package bench
