-- 0001_core: registry, credentials, dead letters, gaps, events and batch
-- bookkeeping. The readings table is created by migration 0002, whose
-- layout depends on the storage mode (plain partitioned or TimescaleDB).

-- storage_settings remembers decisions taken once per database, such as
-- the readings layout ("partitioned" or "timescale").
CREATE TABLE IF NOT EXISTS storage_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- edges are plant edge agents. id is the operator-chosen name used in
-- batches and URLs; num is a compact key stored in every reading.
CREATE TABLE IF NOT EXISTS edges (
    num                integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name               text NOT NULL,
    token_hash         bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at         timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    last_seen          timestamptz,
    version            text NOT NULL DEFAULT '',
    last_status        jsonb,
    status_at          timestamptz,
    backlog_records    bigint,
    backlog_bytes      bigint,
    oldest_age_seconds double precision,
    runway_hours       double precision,
    clock_offset_ms    double precision
);

-- sensors is the registry. id is the stable key "site/line/asset/name";
-- num is the compact key stored in every reading. range_min/range_max are
-- the physical range; range_policy says what happens outside it.
CREATE TABLE IF NOT EXISTS sensors (
    num             integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    id              text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 256),
    site            text NOT NULL DEFAULT '',
    line            text NOT NULL DEFAULT '',
    asset           text NOT NULL DEFAULT '',
    name            text NOT NULL DEFAULT '',
    type            text NOT NULL DEFAULT '',
    unit            text NOT NULL DEFAULT '',
    range_min       double precision,
    range_max       double precision,
    range_policy    text NOT NULL DEFAULT 'flag' CHECK (range_policy IN ('flag', 'reject')),
    edge_id         text REFERENCES edges (id) ON DELETE SET NULL,
    auto_registered boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_value      double precision,
    last_time       timestamptz
);
CREATE INDEX IF NOT EXISTS sensors_site_asset_idx ON sensors (site, asset);
CREATE INDEX IF NOT EXISTS sensors_edge_idx ON sensors (edge_id);

-- api_keys are credentials for people and tools.
CREATE TABLE IF NOT EXISTS api_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    role       text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    key_hash   bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- edge_batches records every batch accepted from an edge, with its
-- outcome, so that a retried batch (same edge and batch id) gets the same
-- answer without storing anything twice.
CREATE TABLE IF NOT EXISTS edge_batches (
    edge_id     text NOT NULL,
    batch_id    text NOT NULL,
    first_seq   bigint NOT NULL,
    last_seq    bigint NOT NULL,
    readings    integer NOT NULL,
    events      integer NOT NULL,
    gaps        integer NOT NULL,
    accepted    integer NOT NULL DEFAULT 0,
    duplicate   integer NOT NULL DEFAULT 0,
    rejected    integer NOT NULL DEFAULT 0,
    rejections  jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (edge_id, batch_id)
);
CREATE INDEX IF NOT EXISTS edge_batches_received_idx ON edge_batches (received_at);

-- rejected_readings is the dead-letter table: every item of a batch that
-- was not stored, with the reason and its raw values.
CREATE TABLE IF NOT EXISTS rejected_readings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    edge_id     text NOT NULL,
    batch_id    text NOT NULL,
    item        text NOT NULL CHECK (item IN ('reading', 'event', 'gap')),
    item_index  integer NOT NULL,
    sensor      text NOT NULL DEFAULT '',
    reason      text NOT NULL,
    raw         jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejected_readings_edge_idx ON rejected_readings (edge_id, id);
CREATE INDEX IF NOT EXISTS rejected_readings_received_idx ON rejected_readings (received_at);

-- gaps are readings an edge lost or shed, reported so the loss is visible.
CREATE TABLE IF NOT EXISTS gaps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    edge_id     text NOT NULL,
    batch_id    text NOT NULL,
    sensor      text NOT NULL DEFAULT '',
    from_time   timestamptz NOT NULL,
    to_time     timestamptz NOT NULL,
    count       bigint NOT NULL,
    reason      text NOT NULL,
    seq         bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
-- A gap record is stored once per edge sequence number, even when it is
-- re-sent in another batch.
CREATE UNIQUE INDEX IF NOT EXISTS gaps_edge_seq_uq ON gaps (edge_id, seq) WHERE seq > 0;
CREATE INDEX IF NOT EXISTS gaps_sensor_idx ON gaps (sensor, from_time);

-- events are the raw anomaly and limit events from edges; the alerts
-- component turns them into alerts and marks them processed.
CREATE TABLE IF NOT EXISTS events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    edge_id      text NOT NULL,
    batch_id     text NOT NULL,
    sensor       text NOT NULL,
    asset        text NOT NULL DEFAULT '',
    kind         smallint NOT NULL,
    state        smallint NOT NULL,
    severity     smallint NOT NULL,
    rule         text NOT NULL DEFAULT '',
    time         timestamptz NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    value        double precision NOT NULL,
    score        real NOT NULL,
    threshold    double precision NOT NULL,
    model        text NOT NULL DEFAULT '',
    seq          bigint NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS events_edge_seq_uq ON events (edge_id, seq) WHERE seq > 0;
CREATE INDEX IF NOT EXISTS events_unprocessed_idx ON events (id) WHERE processed_at IS NULL;
CREATE INDEX IF NOT EXISTS events_sensor_idx ON events (sensor, time);
