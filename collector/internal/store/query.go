package store

// bucketOriginSQL is the origin of time buckets: Monday 2000-01-03 UTC, the
// default origin of TimescaleDB's time_bucket, so date_bin on plain
// PostgreSQL and the continuous aggregates share one grid.
const bucketOriginSQL = "TIMESTAMPTZ '2000-01-03 00:00:00+00'"
