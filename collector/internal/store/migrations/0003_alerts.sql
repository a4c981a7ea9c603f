-- 0003_alerts: alerts built from edge events, their audit trail and the
-- transactional notification outbox (collector/internal/alert and
-- collector/internal/notify).

-- alerts: one row per problem. While an alert is not resolved it is the
-- only one for its (sensor, rule_key): further events update it.
-- Times named *_at are server times, except opened_at/last_event_at,
-- which are the edge's event times.
CREATE TABLE IF NOT EXISTS alerts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor             text NOT NULL,
    site               text NOT NULL DEFAULT '',
    asset              text NOT NULL DEFAULT '',
    kind               text NOT NULL CHECK (kind IN ('anomaly', 'limit')),
    rule               text NOT NULL DEFAULT '',
    rule_key           text NOT NULL,
    severity           smallint NOT NULL CHECK (severity BETWEEN 1 AND 4),
    state              text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    opened_at          timestamptz NOT NULL,
    last_event_at      timestamptz NOT NULL,
    event_count        integer NOT NULL DEFAULT 1,
    last_value         double precision NOT NULL,
    peak_score         real NOT NULL,
    threshold          double precision NOT NULL,
    model              text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    clear_since        timestamptz,
    acked_at           timestamptz,
    acked_by           text,
    resolved_at        timestamptz,
    resolved_by        text,
    escalation_level   integer NOT NULL DEFAULT 0,
    escalated_at       timestamptz,
    limit_value        double precision,
    limit_eta          timestamptz,
    trend_per_hour     double precision
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_active_uq ON alerts (sensor, rule_key) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_state_idx ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_site_asset_idx ON alerts (site, asset, id);
CREATE INDEX IF NOT EXISTS alerts_sensor_idx ON alerts (sensor, id);
CREATE INDEX IF NOT EXISTS alerts_created_idx ON alerts (created_at);

-- alert_events is the audit trail: every transition with who and a note.
CREATE TABLE IF NOT EXISTS alert_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    transition text NOT NULL,
    actor      text NOT NULL,
    note       text NOT NULL DEFAULT '',
    severity   smallint NOT NULL,
    value      double precision,
    score      real
);
CREATE INDEX IF NOT EXISTS alert_events_alert_idx ON alert_events (alert_id, id);

-- notification_outbox holds one row per (transition, channel), written in
-- the transaction that made the transition. Workers claim due rows with
-- FOR UPDATE SKIP LOCKED, send, and set sent_at in the same transaction.
CREATE TABLE IF NOT EXISTS notification_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint NOT NULL,
    alert_event_id  bigint NOT NULL,
    channel         text NOT NULL,
    transition      text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    sent_at         timestamptz,
    failed_at       timestamptz,
    UNIQUE (alert_event_id, channel)
);
CREATE INDEX IF NOT EXISTS notification_outbox_due_idx ON notification_outbox (channel, next_attempt_at, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS notification_outbox_created_idx ON notification_outbox (created_at);
