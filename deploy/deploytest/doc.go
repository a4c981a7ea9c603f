// Package deploytest checks the operations files in deploy/ against the
// programs they describe: the Prometheus alert rules load in promtool,
// every rule carries a severity, a summary, a description and a runbook
// hint, the Grafana dashboard is well formed and its queries parse, and
// every metric name the rules and the dashboard use is exported by
// sm-edge or sm-collector.
//
// The metric check builds both binaries, starts them against the real
// PostgreSQL (testenv.Postgres) and Mosquitto (testenv.MQTT), pushes a few
// simulated readings through the edge into the collector, and scrapes
// both /metrics endpoints. Some families only appear once they have a
// sample (labelled counters of code paths the run does not take, such as
// failed notifications); for those the check falls back to finding the
// metric's quoted name in the binary's non-test Go source, and the test
// log says which check applied to each name.
//
// promtool comes with the Debian/Ubuntu package prometheus
// (apt-get install -y prometheus). Without it the promtool tests are
// skipped, or fail when CI is set.
package deploytest
