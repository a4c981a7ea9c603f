package store

// ============================================================================
// TimescaleDB: EVERY TimescaleDB-specific statement of the collector lives in
// this file, so that it can be reviewed in one place. It is written against
// the TimescaleDB 2.x documentation (create_hypertable with by_range is 2.13+;
// hierarchical features are not used) and verified separately against a real
// TimescaleDB; CI runs on plain PostgreSQL, where none of it is executed.
// ============================================================================

import (
	"fmt"
	"time"
)

// Continuous aggregate names and their bucket widths. Both are built on the
// raw readings hypertable (not hierarchically) to keep them independent.
const (
	cagg1m = "readings_1m"
	cagg1h = "readings_1h"
)

// timescaleCaggRetention is how long the 1-hour aggregate is kept: a year,
// so that trends stay queryable long after raw readings are dropped.
const timescaleCaggRetention = 365 * 24 * time.Hour

// timescaleCompressAfter is the age after which raw chunks are compressed.
// A week leaves the recent, most-written and most-queried data row-oriented
// while older data shrinks about tenfold.
const timescaleCompressAfter = 7 * 24 * time.Hour

// tsCreateExtension enables the extension. It fails when the library is not
// preloaded (shared_preload_libraries), which auto mode treats as "absent".
const tsCreateExtension = `CREATE EXTENSION IF NOT EXISTS timescaledb`

// tsAvailable reports whether the server can load the extension at all.
const tsAvailable = `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')`

// tsIsHypertable reports whether readings is a hypertable.
const tsIsHypertable = `SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
	WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings')`

// tsReadingsTable is the readings table before it becomes a hypertable. It
// has the same columns and key as the plain layout (readings_plain.sql), but
// is not declaratively partitioned: create_hypertable refuses such tables.
const tsReadingsTable = `CREATE TABLE IF NOT EXISTS readings (
    sensor_id integer NOT NULL,
    time      timestamptz NOT NULL,
    value     double precision NOT NULL,
    quality   smallint NOT NULL DEFAULT 0,
    flags     integer NOT NULL DEFAULT 0,
    score     real NOT NULL DEFAULT 0,
    model     text,
    edge_num  integer,
    seq       bigint,
    PRIMARY KEY (sensor_id, time)
)`

// timescaleSchema returns, in order, the idempotent statements that turn the
// readings table into a hypertable with compression, retention and the 1 min
// and 1 h continuous aggregates. retention is the raw-data retention.
//
// The statements are run one by one outside a transaction block: creating a
// continuous aggregate is done WITH NO DATA (allowed in a transaction, but
// policies then fill it in the background), and every call uses
// if_not_exists so that re-running migrate is harmless.
func timescaleSchema(retention time.Duration) []string {
	return []string{
		tsReadingsTable,
		// One chunk per day: a day of a mid-size fleet is a few hundred MB,
		// within the recommended "chunk indexes fit in 25 % of memory".
		`SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE)`,
		// Segment by sensor: queries always select one or a few sensors.
		`ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'sensor_id', timescaledb.compress_orderby = 'time DESC')`,
		fmt.Sprintf(`SELECT add_compression_policy('readings', compress_after => %s, if_not_exists => TRUE)`, pgInterval(timescaleCompressAfter)),
		fmt.Sprintf(`SELECT add_retention_policy('readings', drop_after => %s, if_not_exists => TRUE)`, pgInterval(retention)),
		tsCaggSQL(cagg1m, "1 minute"),
		tsCaggSQL(cagg1h, "1 hour"),
		// Refresh the last few hours every minute (1m) / the last few days
		// every hour (1h); the newest, still-open bucket is excluded and
		// served by real-time aggregation (materialized_only = false).
		`SELECT add_continuous_aggregate_policy('readings_1m', start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE)`,
		`SELECT add_continuous_aggregate_policy('readings_1h', start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE)`,
		fmt.Sprintf(`SELECT add_retention_policy('readings_1m', drop_after => %s, if_not_exists => TRUE)`, pgInterval(retention)),
		fmt.Sprintf(`SELECT add_retention_policy('readings_1h', drop_after => %s, if_not_exists => TRUE)`, pgInterval(max(timescaleCaggRetention, retention))),
	}
}

// tsCaggSQL is the continuous aggregate of readings per sensor at one bucket
// width. It keeps sum and count (so that coarser buckets can be re-averaged
// exactly), min, max and the last value by time.
func tsCaggSQL(name, width string) string {
	return fmt.Sprintf(`CREATE MATERIALIZED VIEW IF NOT EXISTS %s
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT sensor_id,
       time_bucket(INTERVAL '%s', time) AS bucket,
       sum(value)         AS sum_value,
       count(*)           AS n,
       min(value)         AS min_value,
       max(value)         AS max_value,
       last(value, time)  AS last_value,
       max(time)          AS last_time
FROM readings
GROUP BY sensor_id, bucket
WITH NO DATA`, name, width)
}

// tsCaggFor picks the continuous aggregate that can answer a bucketed query
// with the given step: the coarsest aggregate whose width divides step. It
// returns "" when none fits (the query then reads raw readings).
func tsCaggFor(step time.Duration) string {
	switch {
	case step >= time.Hour && step%time.Hour == 0:
		return cagg1h
	case step >= time.Minute && step%time.Minute == 0:
		return cagg1m
	}
	return ""
}

// tsBucketedFromCagg is the bucketed readings query over a continuous
// aggregate. $1 sensor num, $2 from, $3 to, $4 step, $5 limit. Buckets are
// aligned by date_bin to bucketOrigin, the same grid as time_bucket's
// default origin, so coarser steps combine whole aggregate buckets. A bucket
// is included when its aggregate bucket starts in [from, to).
func tsBucketedFromCagg(cagg string, agg string) string {
	var expr string
	switch agg {
	case "avg":
		expr = "sum(sum_value) / sum(n)"
	case "min":
		expr = "min(min_value)"
	case "max":
		expr = "max(max_value)"
	case "count":
		expr = "sum(n)::double precision"
	case "last":
		expr = "(array_agg(last_value ORDER BY last_time DESC))[1]"
	default:
		return ""
	}
	return fmt.Sprintf(`SELECT date_bin($4::interval, bucket, %s) AS b, %s AS v, sum(n)::bigint AS n
FROM %s
WHERE sensor_id = $1 AND bucket >= $2 AND bucket < $3
GROUP BY b ORDER BY b LIMIT $5`, bucketOriginSQL, expr, cagg)
}

// pgInterval renders d as a PostgreSQL interval literal in whole seconds.
func pgInterval(d time.Duration) string {
	return fmt.Sprintf("INTERVAL '%d seconds'", int64(d/time.Second))
}
