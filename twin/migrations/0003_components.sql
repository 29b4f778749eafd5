-- City management components (GB/T 30428.2): classes, codes, the components, their history.

-- Major and minor classes, loaded from the data files of layers/components (and any local
-- extension file) by `twin db migrate`; a class is its 4-digit (or 5-digit) code.
CREATE TABLE twin.component_classes (
    class_code    text PRIMARY KEY CHECK (class_code ~ '^[0-9]{4,5}$'),
    major         text NOT NULL CHECK (major ~ '^[0-9]{2}$'),
    name_zh       text NOT NULL,
    name_en       text NOT NULL DEFAULT '',
    major_name_zh text NOT NULL DEFAULT '',
    major_name_en text NOT NULL DEFAULT '',
    local         boolean NOT NULL DEFAULT false
);

-- The last sequence number given per district and class: codes are generated under this
-- row's lock, so concurrent inserts never share a number.
CREATE TABLE twin.component_sequences (
    district   text NOT NULL,
    class_code text NOT NULL,
    last       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (district, class_code)
);

CREATE TABLE twin.components (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL CHECK (code ~ '^[0-9]{16,17}$'),
    class_code  text NOT NULL REFERENCES twin.component_classes (class_code),
    name        text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT '完好'
                CHECK (status IN ('完好', '破损', '丢失', '废弃', '移除')),
    dept_code   text,  -- 主管部门
    dept_name   text,
    owner_code  text,  -- 权属单位
    owner_name  text,
    maint_code  text,  -- 养护单位
    maint_name  text,
    unit_grid   text,  -- assigned from the location on insert and on move
    init_date   date,
    change_date date,
    source      text,
    note        text,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    version     integer NOT NULL DEFAULT 1,
    deleted_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    geom        geometry(Point, 4326) NOT NULL
);
-- A code names one current component; a deleted one keeps its code for its history.
CREATE UNIQUE INDEX components_current_code ON twin.components (code) WHERE deleted_at IS NULL;
CREATE INDEX components_geom ON twin.components USING gist (geom);
CREATE INDEX components_class ON twin.components (class_code);
CREATE INDEX components_unit_grid ON twin.components (unit_grid);

-- Every prior state of every component: one row per replaced version.
CREATE TABLE twin.components_history (
    history_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         bigint NOT NULL,
    version    integer NOT NULL,
    state      jsonb NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, version)
);

CREATE FUNCTION twin.unit_grid_at(p geometry) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT code FROM twin.grid_cells
    WHERE level = 'unit' AND valid_to IS NULL AND ST_Intersects(geom, p)
    ORDER BY code LIMIT 1
$$;

CREATE FUNCTION twin.components_before_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NOT ST_Equals(NEW.geom, OLD.geom) THEN
        NEW.unit_grid := twin.unit_grid_at(NEW.geom);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO twin.components_history (id, version, state)
        VALUES (OLD.id, OLD.version,
                to_jsonb(OLD) - 'geom' || jsonb_build_object('geom', ST_AsGeoJSON(OLD.geom)::jsonb));
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER components_before_write BEFORE INSERT OR UPDATE ON twin.components
    FOR EACH ROW EXECUTE FUNCTION twin.components_before_write();

-- What the API publishes: current, not deleted.
CREATE VIEW twin.components_current AS
    SELECT c.id AS fid, c.code, c.class_code, k.major, k.name_zh AS class_name, c.name,
           c.status, c.dept_code, c.dept_name, c.owner_code, c.owner_name, c.maint_code,
           c.maint_name, c.unit_grid, c.init_date, c.change_date, c.source, c.note,
           c.attributes, c.version, c.geom
    FROM twin.components c JOIN twin.component_classes k USING (class_code)
    WHERE c.deleted_at IS NULL;

