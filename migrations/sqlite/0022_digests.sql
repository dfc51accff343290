-- Digest schedules: see migrations/postgres/0024_digests.sql.
CREATE TABLE digest_schedules (
    id                INTEGER PRIMARY KEY,
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
    enabled           INTEGER NOT NULL DEFAULT 1,
    last_period_start TEXT,
    last_sent_at      TEXT,
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    -- A change starts the schedule over: sends before it are not caught up.
    updated_at        TEXT NOT NULL
);
