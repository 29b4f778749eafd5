-- Tiles are cut in Web Mercator. Components are the densest layer (tens of thousands of points in
-- a tile at city scale), and transforming each point on every tile is a third of the tile's
-- time; the table keeps a Web Mercator copy of each location, computed on write, with its own
-- index. Storage stays EPSG:4326 (geom); geom_3857 is derived and never written by hand.
ALTER TABLE twin.components
    ADD COLUMN geom_3857 geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED;
CREATE INDEX components_geom_3857 ON twin.components USING gist (geom_3857);

CREATE OR REPLACE FUNCTION twin.components_before_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NOT ST_Equals(NEW.geom, OLD.geom) THEN
        NEW.unit_grid := twin.unit_grid_at(NEW.geom);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO twin.components_history (id, version, state)
        VALUES (OLD.id, OLD.version,
                to_jsonb(OLD) - 'geom' - 'geom_3857'
                || jsonb_build_object('geom', ST_AsGeoJSON(OLD.geom)::jsonb));
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE VIEW twin.components_current AS
    SELECT c.id AS fid, c.code, c.class_code, k.major, k.name_zh AS class_name, c.name,
           c.status, c.dept_code, c.dept_name, c.owner_code, c.owner_name, c.maint_code,
           c.maint_name, c.unit_grid, c.init_date, c.change_date, c.source, c.note,
           c.attributes, c.version, c.geom, c.geom_3857
    FROM twin.components c JOIN twin.component_classes k USING (class_code)
    WHERE c.deleted_at IS NULL;
