-- 0004_event_retry: the alert sweeper retries events whose processing into
-- alerts failed (collector/internal/alert, Processor.Sweep). Every failed
-- attempt, live in the ingest transaction or by the sweeper, increments
-- attempts and keeps the error; after the configured number of attempts
-- the event is given up: failed_at is set and the sweeper no longer
-- picks it up, so a poison event never blocks the others.
ALTER TABLE events ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN IF NOT EXISTS last_error text;
ALTER TABLE events ADD COLUMN IF NOT EXISTS failed_at timestamptz;

-- The sweeper claims pending events oldest event time first.
CREATE INDEX IF NOT EXISTS events_pending_idx ON events (time, id)
    WHERE processed_at IS NULL AND failed_at IS NULL AND seq > 0;
-- ... and looks for older pending events of the same sensors, to keep
-- event-time order per sensor.
CREATE INDEX IF NOT EXISTS events_pending_sensor_idx ON events (sensor, time)
    WHERE processed_at IS NULL AND failed_at IS NULL AND seq > 0;
