-- 0001: the hub's first schema. Plain tables, no extension, so it runs on
-- any PostgreSQL >= 14, Supabase and managed services included; row-level
-- security can be enabled table by table (every table has a primary key,
-- and the room of each row is one join away).

CREATE TABLE rooms (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A desk is a box, named by its device_id. Only the SHA-256 of its token is
-- kept; revoking clears it.
CREATE TABLE desks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id     text NOT NULL UNIQUE,
    room_id       bigint NOT NULL REFERENCES rooms (id),
    token_sha256  bytea UNIQUE,
    enrolled_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX desks_room ON desks (room_id);

CREATE TABLE students (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    student_id  text NOT NULL UNIQUE,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- ready: created, not started (start_at, if set, is when the scheduler
-- starts it); running; stopped (end_at: when the scheduler stops it).
CREATE TABLE exams (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id     bigint NOT NULL REFERENCES rooms (id),
    name        text,
    state       text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'running', 'stopped')),
    start_at    timestamptz,
    end_at      timestamptz,
    started_at  timestamptz,
    stopped_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL
);
CREATE INDEX exams_room ON exams (room_id);
CREATE INDEX exams_due ON exams (state, start_at, end_at);

-- Which student sits at which desk.
CREATE TABLE roster (
    exam_id     bigint NOT NULL REFERENCES exams (id) ON DELETE CASCADE,
    desk_id     bigint NOT NULL REFERENCES desks (id),
    student_id  bigint NOT NULL REFERENCES students (id),
    PRIMARY KEY (exam_id, desk_id),
    UNIQUE (exam_id, student_id)
);

-- One per roster desk while its exam runs: the session_id the box scores
-- under ("ex{exam}-{device_id}"). At most one open session per desk.
CREATE TABLE sessions (
    id          text PRIMARY KEY,
    exam_id     bigint NOT NULL REFERENCES exams (id),
    desk_id     bigint NOT NULL REFERENCES desks (id),
    student_id  bigint NOT NULL REFERENCES students (id),
    started_at  timestamptz NOT NULL,
    stopped_at  timestamptz
);
CREATE UNIQUE INDEX sessions_one_open_per_desk ON sessions (desk_id) WHERE stopped_at IS NULL;
CREATE INDEX sessions_exam ON sessions (exam_id);

-- One row per delivered batch: (desk, batch_key) is the idempotency key.
-- session_id and student_id are as the box sent them (a session the hub
-- does not know is kept, not refused). received_at is the hub's clock;
-- skew_ms = hub - box, from skew_source ('header': X-Invigil-Sent-At,
-- 'live': the box's live state, 'scores': the newest score); offset_ms is
-- what is added to the box's timestamps to place the scores (0 when the
-- skew is small enough to be transit time).
CREATE TABLE batches (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    desk_id      bigint NOT NULL REFERENCES desks (id),
    batch_key    text NOT NULL,
    session_id   text,
    student_id   text,
    received_at  timestamptz NOT NULL,
    sent_at      timestamptz,
    skew_ms      bigint NOT NULL,
    skew_source  text NOT NULL,
    offset_ms    bigint NOT NULL,
    n_scores     integer NOT NULL,
    n_incidents  integer NOT NULL,
    first_frame  bigint,
    last_frame   bigint,
    first_ts     timestamptz,
    last_ts      timestamptz,
    body_sha256  bytea NOT NULL,
    hub          text NOT NULL,
    UNIQUE (desk_id, batch_key)
);
CREATE INDEX batches_session ON batches (session_id);

-- One row per delivered score. No foreign key: a score is only ever
-- inserted by the statement that inserts its batch, and a per-row
-- constraint trigger would cost a large share of ingest time.
-- reasons: bits in proto::Reason::KNOWN order; other_reasons: names this
-- hub did not know, comma-separated.
CREATE TABLE scores (
    batch_id       bigint NOT NULL,
    frame          bigint NOT NULL,
    ts             timestamptz NOT NULL,
    focus_score    smallint NOT NULL,
    num_faces      smallint NOT NULL,
    yaw_deg        real,
    pitch_deg      real,
    reasons        integer NOT NULL,
    other_reasons  text
);
-- batch_id only grows, so a BRIN index (a few pages, nearly free to
-- maintain) finds a batch's scores; a B-tree would cost a large share of
-- ingest time (docs/PERFORMANCE.md, "Hub").
CREATE INDEX scores_batch ON scores USING brin (batch_id);

-- Incidents as the boxes report them, by the box's id (unique per desk).
CREATE TABLE incidents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    desk_id       bigint NOT NULL REFERENCES desks (id),
    incident_key  text NOT NULL,
    session_id    text,
    student_id    text,
    started       timestamptz NOT NULL,
    ended         timestamptz,
    min_score     smallint NOT NULL,
    reasons       text[] NOT NULL,
    box_clips     jsonb NOT NULL DEFAULT '[]',
    offset_ms     bigint NOT NULL DEFAULT 0,
    first_seen    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (desk_id, incident_key)
);
CREATE INDEX incidents_key ON incidents (incident_key);
CREATE INDEX incidents_session ON incidents (session_id);

-- Clips uploaded through the hub; the hub chose object_key.
CREATE TABLE clips (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  bigint NOT NULL REFERENCES incidents (id),
    part         integer NOT NULL,
    object_key   text NOT NULL,
    bytes        bigint NOT NULL,
    uploaded_at  timestamptz NOT NULL,
    UNIQUE (incident_id, part)
);

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'proctor')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

-- The rooms a proctor may see (an admin sees every room).
CREATE TABLE user_rooms (
    user_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id  bigint NOT NULL REFERENCES rooms (id),
    PRIMARY KEY (user_id, room_id)
);

-- Console logins: the SHA-256 of the cookie's random token.
CREATE TABLE login_sessions (
    token_sha256  bytea PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX login_sessions_expiry ON login_sessions (expires_at);

CREATE TABLE reviews (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  bigint NOT NULL REFERENCES incidents (id),
    user_id      bigint NOT NULL REFERENCES users (id),
    decision     text NOT NULL CHECK (decision IN ('dismissed', 'confirmed', 'unsure')),
    note         text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reviews_incident ON reviews (incident_id);

-- Who did what when: every admin action and every clip view.
CREATE TABLE audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);

-- The latest live state of each connected desk, written by the hub it is
-- connected to every ~500 ms and read by any hub. UNLOGGED: it is rebuilt
-- within a second after a crash, and needs no WAL.
CREATE UNLOGGED TABLE desk_live (
    desk_id    bigint PRIMARY KEY,
    hub        text NOT NULL,
    connected  boolean NOT NULL,
    seen_at    timestamptz NOT NULL,
    skew_ms    bigint,
    state      jsonb
);

-- Scores with their desk, session and student, placed by the hub's clock.
CREATE VIEW score_rows AS
SELECT d.device_id,
       b.session_id,
       b.student_id,
       s.frame,
       s.ts + b.offset_ms * interval '1 millisecond' AS ts,
       s.ts AS box_ts,
       b.received_at,
       s.focus_score,
       s.num_faces,
       s.yaw_deg,
       s.pitch_deg,
       s.reasons,
       s.other_reasons,
       b.batch_key
FROM scores s
JOIN batches b ON b.id = s.batch_id
JOIN desks d ON d.id = b.desk_id;
