-- readings on plain PostgreSQL: range-partitioned by time. Partitions
-- (one per UTC day, readings_pYYYYMMDD) are created ahead and dropped after
-- the retention period by DB.MaintainPartitions. The DEFAULT partition
-- catches a reading outside every created partition, so such a reading
-- never fails a batch; MaintainPartitions moves those rows into the
-- proper partition when it creates it.
CREATE TABLE IF NOT EXISTS readings (
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
) PARTITION BY RANGE (time);
CREATE TABLE IF NOT EXISTS readings_default PARTITION OF readings DEFAULT;
