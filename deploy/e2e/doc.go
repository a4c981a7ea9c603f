// Package e2e holds the end-to-end scenarios behind `make e2e`: they
// start the real sm-edge and sm-collector binaries as processes, against
// the real PostgreSQL and a private Mosquitto configured not to drop
// messages, inject faults (kill -9 of the edge, collector, database and
// broker restarts, an outage longer than the edge's queue budget, an
// out-of-limit signal) and assert exact counts in the database.
//
// The tests carry the build tag e2e:
//
//	make build && go test -count=1 -tags e2e ./deploy/e2e/...
//
// They use bin/sm-edge and bin/sm-collector from the repository root, and
// build them into a temporary directory when those are missing. The run
// ends with a table per scenario: published, stored, duplicates,
// gap-accounted, lost, and publish→row latency p50/p99.
package e2e
