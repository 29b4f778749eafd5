-- Underground pipe networks (CJJ 61): networks, nodes, segments, their history, and the
-- topology findings. One table each for nodes and segments across networks (traces and
-- conflict checks read them together); the store publishes a view per network.

-- Revisions come from one sequence, so a network dropped and imported again never repeats a
-- revision that a cached graph of its earlier self still carries.
CREATE SEQUENCE twin.pipe_revision;

CREATE TABLE twin.pipe_networks (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,30}$'),
    title       text NOT NULL DEFAULT '',
    utility     text NOT NULL CHECK (utility IN ('JS', 'PS', 'RQ', 'RL', 'DL', 'TX', 'GY', 'QT')),
    subclass    text,
    gravity     boolean NOT NULL,
    source      text,          -- the file(s) it was imported from
    source_crs  text,
    revision    bigint NOT NULL DEFAULT nextval('twin.pipe_revision'),  -- moved on by every write
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE twin.pipe_nodes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    network       text NOT NULL REFERENCES twin.pipe_networks (name) ON DELETE CASCADE,
    node_id       text NOT NULL CHECK (node_id <> ''),
    kind          text NOT NULL CHECK (kind IN (
        'junction', 'hydrant', 'manhole', 'inlet', 'pump_station', 'fitting', 'source', 'plant',
        'reservoir', 'tank', 'regulator', 'valve', 'meter', 'service', 'outfall',
        'treatment_plant')),
    valve_state   text CHECK (valve_state IN ('open', 'closed', 'inoperable')),
    feature_code  text,
    name          text,
    ground_elev_m double precision,
    invert_m      double precision,
    depth_m       double precision,
    unit_grid     text,
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb,
    version       integer NOT NULL DEFAULT 1,
    deleted_at    timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    geom          geometry(Point, 4326) NOT NULL,
    CHECK ((kind = 'valve') = (valve_state IS NOT NULL))
);
CREATE UNIQUE INDEX pipe_nodes_current_id ON twin.pipe_nodes (network, node_id)
    WHERE deleted_at IS NULL;
CREATE INDEX pipe_nodes_geom ON twin.pipe_nodes USING gist (geom);

CREATE TABLE twin.pipe_segments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    network        text NOT NULL REFERENCES twin.pipe_networks (name) ON DELETE CASCADE,
    pipe_id        text NOT NULL CHECK (pipe_id <> ''),
    from_node      text NOT NULL,
    to_node        text NOT NULL,
    utility        text NOT NULL,
    subclass       text,
    feature_code   text,
    diameter_mm    double precision CHECK (diameter_mm > 0),
    section        text,
    material       text,
    year_laid      integer CHECK (year_laid BETWEEN 1800 AND 2200),
    depth_m        double precision,
    start_depth_m  double precision,
    end_depth_m    double precision,
    start_invert_m double precision,
    end_invert_m   double precision,
    flow           text CHECK (flow IN ('forward', 'reverse', 'none')),
    state          text NOT NULL DEFAULT '在用' CHECK (state IN ('在用', '废弃', '空管', '其他')),
    owner          text,
    laying         text,
    length_m       double precision NOT NULL DEFAULT 0,
    unit_grid      text,
    attributes     jsonb NOT NULL DEFAULT '{}'::jsonb,
    version        integer NOT NULL DEFAULT 1,
    deleted_at     timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    geom           geometry(LineString, 4326) NOT NULL
);
CREATE UNIQUE INDEX pipe_segments_current_id ON twin.pipe_segments (network, pipe_id)
    WHERE deleted_at IS NULL;
CREATE INDEX pipe_segments_geom ON twin.pipe_segments USING gist (geom);
CREATE INDEX pipe_segments_network ON twin.pipe_segments (network) WHERE deleted_at IS NULL;

CREATE TABLE twin.pipe_nodes_history (
    history_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          bigint NOT NULL,
    version     integer NOT NULL,
    state       jsonb NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, version)
);
CREATE TABLE twin.pipe_segments_history (LIKE twin.pipe_nodes_history INCLUDING ALL);

-- History, version and derived columns (unit grid, length) on every write.
CREATE FUNCTION twin.pipe_before_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NOT ST_Equals(NEW.geom, OLD.geom) THEN
        IF TG_TABLE_NAME = 'pipe_segments' THEN
            NEW.unit_grid := twin.unit_grid_at(ST_LineInterpolatePoint(NEW.geom, 0.5));
            NEW.length_m := round(ST_Length(NEW.geom::geography)::numeric, 2);
        ELSE
            NEW.unit_grid := twin.unit_grid_at(NEW.geom);
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        EXECUTE format('INSERT INTO twin.%I (id, version, state) VALUES ($1, $2, $3)',
                       TG_TABLE_NAME || '_history')
        USING OLD.id, OLD.version,
              to_jsonb(OLD) - 'geom' || jsonb_build_object('geom', ST_AsGeoJSON(OLD.geom)::jsonb);
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER pipe_nodes_before_write BEFORE INSERT OR UPDATE ON twin.pipe_nodes
    FOR EACH ROW EXECUTE FUNCTION twin.pipe_before_write();
CREATE TRIGGER pipe_segments_before_write BEFORE INSERT OR UPDATE ON twin.pipe_segments
    FOR EACH ROW EXECUTE FUNCTION twin.pipe_before_write();

-- Each statement bumps the revision of the networks it touched, so the in-memory network
-- graphs (traces, valve segments) know when to rebuild. Transition tables keep it one
-- UPDATE per network per statement, however many rows a bulk load writes.
CREATE FUNCTION twin.pipe_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE twin.pipe_networks SET revision = nextval('twin.pipe_revision'), updated_at = now()
        WHERE name IN (SELECT DISTINCT network FROM old_rows);
    ELSE
        UPDATE twin.pipe_networks SET revision = nextval('twin.pipe_revision'), updated_at = now()
        WHERE name IN (SELECT DISTINCT network FROM new_rows);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER pipe_nodes_rev_ins AFTER INSERT ON twin.pipe_nodes
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION twin.pipe_bump_revision();
CREATE TRIGGER pipe_nodes_rev_upd AFTER UPDATE ON twin.pipe_nodes
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION twin.pipe_bump_revision();
CREATE TRIGGER pipe_nodes_rev_del AFTER DELETE ON twin.pipe_nodes
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION twin.pipe_bump_revision();
CREATE TRIGGER pipe_segments_rev_ins AFTER INSERT ON twin.pipe_segments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION twin.pipe_bump_revision();
CREATE TRIGGER pipe_segments_rev_upd AFTER UPDATE ON twin.pipe_segments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION twin.pipe_bump_revision();
CREATE TRIGGER pipe_segments_rev_del AFTER DELETE ON twin.pipe_segments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION twin.pipe_bump_revision();

-- The last topology check of each network: one row per finding, located on the map.
CREATE TABLE twin.pipe_findings (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    network  text NOT NULL REFERENCES twin.pipe_networks (name) ON DELETE CASCADE,
    kind     text NOT NULL,
    severity text NOT NULL,
    ref      text NOT NULL,
    message  text NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now(),
    geom     geometry(Point, 4326) NOT NULL
);
CREATE INDEX pipe_findings_geom ON twin.pipe_findings USING gist (geom);
CREATE VIEW twin.pipe_findings_current AS
    SELECT id AS fid, network, kind, severity, ref, message, checked_at, geom
    FROM twin.pipe_findings;
