-- Unified management grid (GB/T 30428.1): district → street → community → unit grid.
-- One table holds the four levels (they share every column and the locate and aggregate
-- queries walk them together); a view per level is what the API publishes.
CREATE TABLE twin.grid_cells (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    level       text NOT NULL CHECK (level IN ('district', 'street', 'community', 'unit')),
    code        text NOT NULL CHECK (code ~ '^[0-9]{6,15}$'),
    name        text NOT NULL DEFAULT '',
    parent_code text,
    area_m2     double precision NOT NULL,
    valid_from  date NOT NULL DEFAULT current_date,
    valid_to    date,
    note        text,
    source      text,
    version     integer NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    geom        geometry(MultiPolygon, 4326) NOT NULL,
    CHECK (valid_to IS NULL OR valid_to >= valid_from)
);

-- A code names one current cell; retired cells (valid_to set) keep their code for history.
CREATE UNIQUE INDEX grid_cells_current_code ON twin.grid_cells (code) WHERE valid_to IS NULL;
CREATE INDEX grid_cells_level ON twin.grid_cells (level) WHERE valid_to IS NULL;
CREATE INDEX grid_cells_geom ON twin.grid_cells USING gist (geom);

-- Bumped by every change to the grid, so caches of cell geometry know when to reload.
CREATE TABLE twin.grid_state (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    revision bigint NOT NULL DEFAULT 0
);
INSERT INTO twin.grid_state DEFAULT VALUES;

CREATE FUNCTION twin.grid_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE twin.grid_state SET revision = revision + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER grid_cells_revision AFTER INSERT OR UPDATE OR DELETE ON twin.grid_cells
    FOR EACH STATEMENT EXECUTE FUNCTION twin.grid_bump_revision();

CREATE VIEW twin.grid_district AS
    SELECT id AS fid, code, name, parent_code, area_m2, valid_from, note, geom
    FROM twin.grid_cells WHERE level = 'district' AND valid_to IS NULL;
CREATE VIEW twin.grid_street AS
    SELECT id AS fid, code, name, parent_code, area_m2, valid_from, note, geom
    FROM twin.grid_cells WHERE level = 'street' AND valid_to IS NULL;
CREATE VIEW twin.grid_community AS
    SELECT id AS fid, code, name, parent_code, area_m2, valid_from, note, geom
    FROM twin.grid_cells WHERE level = 'community' AND valid_to IS NULL;
CREATE VIEW twin.grid_unit AS
    SELECT id AS fid, code, name, parent_code, area_m2, valid_from, note, geom
    FROM twin.grid_cells WHERE level = 'unit' AND valid_to IS NULL;
