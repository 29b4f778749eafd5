-- The live twin, first half: an event outbox, sensors, their readings and alarms.

-- Events (alarms opening and clearing, case steps, sensor states) are rows first and
-- notifications second: a server process LISTENs on twin_events and fans the rows out to its
-- Server-Sent Events clients, and a client that reconnects replays from its Last-Event-ID. A
-- NOTIFY is sent only on commit, so nothing is streamed for a change that was rolled back.
CREATE TABLE twin.events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,          -- alarm, case, sensor
    action      text NOT NULL,          -- opened, updated, cleared, created, 立案 ...
    target      text NOT NULL,          -- sensors, cases: the collection whose read role applies
    department  text,                   -- the department concerned, if any
    unit_grid   text,                   -- for grid-code filters (prefix match up the hierarchy)
    lon         double precision,
    lat         double precision,
    payload     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON twin.events (at);

CREATE FUNCTION twin.emit_event(
    p_kind text, p_action text, p_target text, p_department text, p_unit_grid text,
    p_lon double precision, p_lat double precision, p_payload jsonb
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO twin.events (kind, action, target, department, unit_grid, lon, lat, payload)
    VALUES (p_kind, p_action, p_target, p_department, p_unit_grid, p_lon, p_lat, p_payload)
    RETURNING id INTO new_id;
    -- only the id travels: payloads may exceed NOTIFY's 8000 bytes
    PERFORM pg_notify('twin_events', new_id::text);
    RETURN new_id;
END $$;

-- Sensors: a registry row each, published as the `sensors` collection (fid/geom like every
-- served table). The latest value and state are kept on the row, so maps and the collection
-- read them without touching the readings.
CREATE TABLE twin.sensors (
    fid             bigserial PRIMARY KEY,
    sensor_id       text NOT NULL UNIQUE,
    name            text,
    kind            text NOT NULL CHECK (kind IN
                        ('pressure', 'flow', 'level', 'gas', 'air', 'rain', 'temperature',
                         'quality', 'other')),
    unit            text NOT NULL,
    geom            geometry(Point, 4326) NOT NULL,
    network         text,               -- attachment to a pipe node or segment of a network
    node_id         text,
    segment_id      text,
    component_code  text,               -- or to a city component
    unit_grid       text,               -- the unit grid it stands in (located on registration)
    department      text,
    threshold_low   double precision,
    threshold_high  double precision,
    threshold_rate  double precision,   -- largest change per minute, either way
    stale_after_s   integer NOT NULL DEFAULT 900 CHECK (stale_after_s > 0),
    last_time       timestamptz,
    last_value      double precision,
    state           text NOT NULL DEFAULT 'stale' CHECK (state IN ('normal', 'alarm', 'stale')),
    state_since     timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (threshold_low IS NULL OR threshold_high IS NULL OR threshold_low < threshold_high),
    CHECK (threshold_rate IS NULL OR threshold_rate > 0)
);
CREATE INDEX sensors_geom ON twin.sensors USING gist (geom);
CREATE INDEX sensors_stale ON twin.sensors (last_time) WHERE state <> 'stale';

-- Readings, partitioned by day (native partitioning; partitions are made ahead by the ingest
-- and dropped by the retention sweep). The key makes ingest idempotent on (sensor, time).
CREATE TABLE twin.readings (
    sensor  bigint NOT NULL,
    t       timestamptz NOT NULL,
    value   double precision NOT NULL,
    PRIMARY KEY (sensor, t)
) PARTITION BY RANGE (t);

-- Alarms: one open alarm per sensor and rule at most; each change is a row of its history.
CREATE TABLE twin.alarms (
    id           bigserial PRIMARY KEY,
    sensor       bigint NOT NULL REFERENCES twin.sensors (fid) ON DELETE CASCADE,
    rule         text NOT NULL CHECK (rule IN ('low', 'high', 'rate')),
    state        text NOT NULL CHECK (state IN ('open', 'cleared')),
    opened_at    timestamptz NOT NULL,      -- time of the first reading in breach
    updated_at   timestamptz NOT NULL,
    cleared_at   timestamptz,
    first_value  double precision NOT NULL,
    last_value   double precision NOT NULL,
    peak_value   double precision NOT NULL,  -- the value farthest past the threshold
    readings     integer NOT NULL DEFAULT 1, -- readings in breach while open
    threshold    double precision NOT NULL,
    proposal     jsonb,                      -- a likely burst and its isolation, for pressure
    case_code    text                        -- the case opened for it (POST /alarms/{id}/case)
);
CREATE UNIQUE INDEX alarms_one_open ON twin.alarms (sensor, rule) WHERE state = 'open';
CREATE INDEX alarms_sensor ON twin.alarms (sensor, opened_at);

CREATE TABLE twin.alarm_history (
    id      bigserial PRIMARY KEY,
    alarm   bigint NOT NULL REFERENCES twin.alarms (id) ON DELETE CASCADE,
    at      timestamptz NOT NULL,
    action  text NOT NULL CHECK (action IN ('opened', 'updated', 'cleared')),
    value   double precision NOT NULL
);
CREATE INDEX alarm_history_alarm ON twin.alarm_history (alarm, at);

-- The `sensors` collection: the registry with the latest value and state.
CREATE VIEW twin.sensors_current AS
    SELECT fid, sensor_id, name, kind, unit, network, node_id, segment_id, component_code,
           unit_grid, department, threshold_low, threshold_high, threshold_rate, last_time,
           last_value, state, state_since, geom
    FROM twin.sensors;
