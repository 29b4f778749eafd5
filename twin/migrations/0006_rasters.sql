-- Remote sensing: the scene catalog (one row per scene, its COG kept by the twin) and the
-- changes detected between two scenes.

CREATE TABLE twin.raster_collections (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    title       text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE twin.raster_scenes (
    id           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    collection   text NOT NULL REFERENCES twin.raster_collections (id) ON DELETE CASCADE,
    datetime     timestamptz NOT NULL,
    sensor       text NOT NULL DEFAULT '',
    bands        text[] NOT NULL,
    scale        double precision NOT NULL DEFAULT 1,  -- raw value × scale = reflectance
    cog_path     text NOT NULL,   -- never shown to clients; requests name scenes by id
    converted    boolean NOT NULL, -- false when the source was a valid COG, referenced as is
    sources      text[] NOT NULL,  -- source file names (names only), for the record
    epsg         integer,
    crs_wkt      text NOT NULL,
    resolution   double precision[] NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    dtype        text NOT NULL,
    nodata       double precision,
    stats        jsonb NOT NULL,   -- per band: min, max, mean, std, p2, p98, valid_percent
    created_at   timestamptz NOT NULL DEFAULT now(),
    footprint    geometry(Polygon, 4326) NOT NULL
);
CREATE INDEX raster_scenes_footprint ON twin.raster_scenes USING gist (footprint);
CREATE INDEX raster_scenes_collection_time ON twin.raster_scenes (collection, datetime);

CREATE TABLE twin.raster_changes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_set   text NOT NULL,
    kind         text NOT NULL,
    area_m2      double precision NOT NULL,
    unit_grid    text,
    scene_before text NOT NULL,
    scene_after  text NOT NULL,
    date_before  date NOT NULL,
    date_after   date NOT NULL,
    before       jsonb NOT NULL,
    after        jsonb NOT NULL,
    detected_at  timestamptz NOT NULL DEFAULT now(),
    geom         geometry(MultiPolygon, 4326) NOT NULL
);
CREATE INDEX raster_changes_geom ON twin.raster_changes USING gist (geom);
CREATE INDEX raster_changes_set ON twin.raster_changes (change_set);

CREATE VIEW twin.raster_changes_current AS
    SELECT id AS fid, change_set, kind, area_m2, unit_grid, scene_before, scene_after,
           date_before, date_after, before, after, detected_at, geom
    FROM twin.raster_changes;
