-- v1: where the worker (and scheduler) processes record that they are alive.
CREATE TABLE worker_heartbeat (
    worker text PRIMARY KEY,
    beats bigint NOT NULL DEFAULT 0,
    last_beat timestamptz NOT NULL DEFAULT now()
);
