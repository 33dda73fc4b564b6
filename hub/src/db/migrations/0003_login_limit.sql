-- 0003: failed console logins, counted per user name, so password guessing
-- is throttled across every hub process on this database. Additive only.
CREATE TABLE login_failures (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name  text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_name ON login_failures (user_name, at);
