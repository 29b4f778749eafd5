-- Grid cells keep every prior state, like components: edits go through versions.
CREATE TABLE twin.grid_cells_history (
    history_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          bigint NOT NULL,
    version     integer NOT NULL,
    state       jsonb NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, version)
);

CREATE FUNCTION twin.grid_cells_before_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO twin.grid_cells_history (id, version, state)
    VALUES (OLD.id, OLD.version,
            to_jsonb(OLD) - 'geom' || jsonb_build_object('geom', ST_AsGeoJSON(OLD.geom)::jsonb));
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    IF NOT ST_Equals(NEW.geom, OLD.geom) THEN
        NEW.area_m2 := round(ST_Area(NEW.geom::geography)::numeric, 2);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER grid_cells_before_update BEFORE UPDATE ON twin.grid_cells
    FOR EACH ROW EXECUTE FUNCTION twin.grid_cells_before_update();

-- The published views show the version, which is the ETag of an edit.
CREATE OR REPLACE VIEW twin.grid_district AS
    SELECT id AS fid, code, name, parent_code, area_m2, valid_from, note, geom, version
    FROM twin.grid_cells WHERE level = 'district' AND valid_to IS NULL;
CREATE OR REPLACE VIEW twin.grid_street AS
    SELECT id AS fid, code, name, parent_code, area_m2, valid_from, note, geom, version
    FROM twin.grid_cells WHERE level = 'street' AND valid_to IS NULL;
CREATE OR REPLACE VIEW twin.grid_community AS
    SELECT id AS fid, code, name, parent_code, area_m2, valid_from, note, geom, version
    FROM twin.grid_cells WHERE level = 'community' AND valid_to IS NULL;
CREATE OR REPLACE VIEW twin.grid_unit AS
    SELECT id AS fid, code, name, parent_code, area_m2, valid_from, note, geom, version
    FROM twin.grid_cells WHERE level = 'unit' AND valid_to IS NULL;
