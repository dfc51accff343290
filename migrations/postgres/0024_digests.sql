-- Digest schedules (src/digests, src/store/digests.rs): who gets a
-- summary of which domains (domains '[]': every domain), how often and at
-- what local hour. last_period_start is the first day of the newest
-- period whose digest was queued: a node that was down catches up the
-- newest missed period once, and two nodes never queue one period twice
-- (the outbox's dedup key names the schedule and the period too).
CREATE TABLE digest_schedules (
    id                BIGSERIAL PRIMARY KEY,
    name              TEXT NOT NULL,
    -- Email addresses separated by commas.
    recipients        TEXT NOT NULL,
    -- Domain names (JSON array); empty: every domain.
    domains           TEXT NOT NULL DEFAULT '[]',
    frequency         TEXT NOT NULL CHECK (frequency IN ('daily', 'weekly', 'monthly')),
    -- An IANA time zone name (Europe/Berlin).
    time_zone         TEXT NOT NULL,
    hour              INTEGER NOT NULL CHECK (hour BETWEEN 0 AND 23),
    weekday           TEXT CHECK (weekday IN ('monday', 'tuesday', 'wednesday', 'thursday',
                                              'friday', 'saturday', 'sunday')),
    enabled           BOOLEAN NOT NULL DEFAULT true,
    last_period_start TIMESTAMPTZ,
    last_sent_at      TIMESTAMPTZ,
    created_by        TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    -- A change starts the schedule over: sends before it are not caught up.
    updated_at        TIMESTAMPTZ NOT NULL
);
