-- 0002: the room console (issue 14). Additive only.

-- Where a desk sits in the room (optional roster columns row,col; 1-based).
ALTER TABLE roster ADD COLUMN seat_row integer, ADD COLUMN seat_col integer;

-- Retention: an exam's clips (objects and rows) and scores are deleted
-- retention_days after it stopped; purged_at says it was done.
ALTER TABLE exams ADD COLUMN retention_days integer NOT NULL DEFAULT 30
    CHECK (retention_days BETWEEN 1 AND 3650);
ALTER TABLE exams ADD COLUMN purged_at timestamptz;
CREATE INDEX exams_purge ON exams (stopped_at) WHERE purged_at IS NULL AND state = 'stopped';

-- The room an audit entry concerns (so a proctor sees their rooms' log).
ALTER TABLE audit_log ADD COLUMN room_id bigint REFERENCES rooms (id);
CREATE INDEX audit_log_room ON audit_log (room_id, id);
