-- 0005_sensors_last_value: sensors no longer store their last value and
-- time. Updating them in every ingest transaction rewrote one sensors row
-- per sensor and batch (1-7 s per 5,000-reading batch at 20,000 sensors:
-- table bloat and row-lock waits between concurrent batches). Queries
-- take the newest reading from readings instead (store.ListSensors).
ALTER TABLE sensors DROP COLUMN IF EXISTS last_value;
ALTER TABLE sensors DROP COLUMN IF EXISTS last_time;
