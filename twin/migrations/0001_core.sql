-- Core schema: PostGIS, the twin schema and the registry of published layers.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE SCHEMA IF NOT EXISTS twin;
-- Published (user-imported) layers live in their own schema, one table each.
CREATE SCHEMA IF NOT EXISTS published;

CREATE TABLE twin.layers (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    title           text NOT NULL,
    description     text NOT NULL DEFAULT '',
    schema_name     text NOT NULL DEFAULT 'published',
    table_name      text NOT NULL,
    geometry_type   text NOT NULL,
    srid            integer NOT NULL DEFAULT 4326,
    -- attribute columns in file order: [{"name": ..., "type": "integer|double|text|..."}]
    fields          jsonb NOT NULL DEFAULT '[]'::jsonb,
    time_field      text,
    source_file     text,
    source_crs      text,
    feature_count   bigint NOT NULL DEFAULT 0,
    bbox            double precision[],
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schema_name, table_name)
);

COMMENT ON TABLE twin.layers IS 'Registry of published layers served as OGC collections and tiles';
