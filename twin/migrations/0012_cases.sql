-- Cases (案件) of the grid-management loop (一网统管): each case is located to its unit grid,
-- dispatched to a department, handled, checked and closed. The lifecycle rules live in the
-- cases package; this schema keeps what was done, by whom and when.

-- 事件 classes, loaded from the cases package's data file (and local extensions) by
-- `twin db migrate`; 部件 classes are the component classes of migration 0003.
CREATE TABLE twin.case_event_classes (
    class_code     text PRIMARY KEY CHECK (class_code ~ '^[0-9]{4}$'),
    major          text NOT NULL CHECK (major ~ '^[0-9]{2}$'),
    name_zh        text NOT NULL,
    name_en        text NOT NULL DEFAULT '',
    major_name_zh  text NOT NULL DEFAULT '',
    major_name_en  text NOT NULL DEFAULT '',
    deadline_hours numeric NOT NULL CHECK (deadline_hours > 0),  -- 处置时限, from 派遣
    local          boolean NOT NULL DEFAULT false,
    CHECK (starts_with(class_code, major))
);

-- 处置时限 of 部件 cases by component class prefix: the longest prefix wins, '' is the default.
CREATE TABLE twin.case_component_deadlines (
    class_prefix   text PRIMARY KEY CHECK (class_prefix ~ '^[0-9]{0,5}$'),
    deadline_hours numeric NOT NULL CHECK (deadline_hours > 0),
    note           text NOT NULL DEFAULT ''
);

-- Every class a case may have, with its deadline.
CREATE VIEW twin.case_classes AS
    SELECT '事件'::text AS kind, class_code, major, name_zh, major_name_zh, deadline_hours, local
    FROM twin.case_event_classes
    UNION ALL
    SELECT '部件'::text, c.class_code, c.major, c.name_zh, c.major_name_zh,
           (SELECT d.deadline_hours FROM twin.case_component_deadlines d
            WHERE starts_with(c.class_code, d.class_prefix)
            ORDER BY length(d.class_prefix) DESC LIMIT 1),
           c.local
    FROM twin.component_classes c;

-- Who handles what where. Rules are tried by priority (highest first), then the most specific
-- (longest class prefix, then longest grid prefix, then a named kind). A class prefix means
-- nothing without its kind: 部件 0101 and 事件 0101 are different classes.
CREATE TABLE twin.case_dispatch_rules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL DEFAULT '' CHECK (kind IN ('', '部件', '事件')),
    class_prefix    text NOT NULL DEFAULT '' CHECK (class_prefix ~ '^[0-9]{0,5}$'),
    grid_prefix     text NOT NULL DEFAULT '' CHECK (grid_prefix ~ '^[0-9]{0,15}$'),
    priority        integer NOT NULL DEFAULT 0,
    department_code text NOT NULL CHECK (department_code <> ''),
    department_name text NOT NULL DEFAULT '',
    note            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (class_prefix = '' OR kind <> ''),
    UNIQUE (kind, class_prefix, grid_prefix)
);

-- Case codes: district + day (China Standard Time) + a 5-digit sequence of that day, numbered
-- under this row's lock so concurrent reports never share one.
CREATE TABLE twin.case_sequences (
    district text NOT NULL,
    day      date NOT NULL,
    last     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (district, day)
);

CREATE TABLE twin.cases (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[0-9]{19,}$'),
    kind            text NOT NULL CHECK (kind IN ('部件', '事件')),
    class_code      text NOT NULL,
    class_name      text NOT NULL,
    major_name      text NOT NULL DEFAULT '',
    title           text NOT NULL CHECK (title <> ''),
    description     text NOT NULL DEFAULT '',
    source          text NOT NULL DEFAULT 'api',     -- api, alarm, inspector, hotline, ...
    source_ref      text,                            -- e.g. the alarm id
    component_code  text,
    reporter        text NOT NULL,                   -- who reported it (key:<id>, cli:<user>)
    geom            geometry(Point, 4326) NOT NULL,
    unit_grid       text NOT NULL,
    community       text,
    street          text,
    district        text,
    department_code text,       -- proposed at 上报, fixed at 派遣
    department_name text,
    dispatch_basis  text CHECK (dispatch_basis IN ('component', 'rule', 'override')),
    dispatch_rule   bigint,     -- the rule that chose the department, when one did
    state           text NOT NULL DEFAULT '上报'
                    CHECK (state IN ('上报', '立案', '派遣', '处置', '核查', '结案', '作废')),
    deadline_hours  numeric NOT NULL CHECK (deadline_hours > 0),
    dispatched_at   timestamptz,
    deadline        timestamptz,  -- dispatched_at + deadline_hours
    handled_at      timestamptz,  -- the last 处置 (cleared by 返工)
    closed_at       timestamptz,  -- 结案 or 作废
    rework_count    integer NOT NULL DEFAULT 0,
    version         integer NOT NULL DEFAULT 1,   -- the ETag
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (state IN ('上报', '立案', '作废') OR department_code IS NOT NULL),
    CHECK (state NOT IN ('处置', '核查', '结案') OR handled_at IS NOT NULL)
);
CREATE INDEX cases_geom ON twin.cases USING gist (geom);
CREATE INDEX cases_state ON twin.cases (state);
CREATE INDEX cases_unit_grid ON twin.cases (unit_grid text_pattern_ops);
CREATE INDEX cases_department ON twin.cases (department_code);
CREATE INDEX cases_created ON twin.cases (created_at);

-- Every transition: from, to, when, who, and what they said.
CREATE TABLE twin.case_steps (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id         bigint NOT NULL REFERENCES twin.cases (id),
    action          text NOT NULL,  -- 上报, 立案, 派遣, 处置, 核查, 结案, 作废, 返工
    from_state      text,
    to_state        text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,
    role            text NOT NULL,
    actor_department text,
    department_code text,           -- the department at 派遣
    department_name text,
    note            text NOT NULL DEFAULT '',
    version         integer NOT NULL  -- the case's version after the step
);
CREATE INDEX case_steps_case ON twin.case_steps (case_id, id);

-- Overdue is computed when asked, never stored: past the deadline and not handled by it.
CREATE FUNCTION twin.case_overdue(p_state text, p_deadline timestamptz, p_handled timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_state <> '作废' AND p_deadline IS NOT NULL AND coalesce(p_handled, now()) > p_deadline
$$;

-- The read-only `cases` collection. No overdue column: tiles are cached until a case changes,
-- and a flag that turns with the clock would be served stale; `deadline` is there instead.
CREATE VIEW twin.cases_current AS
    SELECT id AS fid, code, kind, class_code, class_name, title, description, state, source,
           component_code, unit_grid, community, street, district, department_code,
           department_name, dispatched_at, deadline, handled_at, closed_at, rework_count,
           created_at, updated_at, version, geom
    FROM twin.cases;

-- Published for viewers and up (cases name places and people's complaints). A plain layer of
-- that name from an earlier generic import gives way in the registry; its table is kept.
INSERT INTO twin.layers (name, title, description, schema_name, table_name, geometry_type,
                         fields, time_field, read_role)
VALUES ('cases', '城市管理案件 cases', 'Grid-management cases: 上报 → 立案 → 派遣 → 处置 → 核查 → 结案',
        'twin', 'cases_current', 'Point',
        '[{"name": "code", "type": "text"}, {"name": "kind", "type": "text"},
          {"name": "class_code", "type": "text"}, {"name": "class_name", "type": "text"},
          {"name": "title", "type": "text"}, {"name": "description", "type": "text"},
          {"name": "state", "type": "text"}, {"name": "source", "type": "text"},
          {"name": "component_code", "type": "text"}, {"name": "unit_grid", "type": "text"},
          {"name": "community", "type": "text"}, {"name": "street", "type": "text"},
          {"name": "district", "type": "text"}, {"name": "department_code", "type": "text"},
          {"name": "department_name", "type": "text"},
          {"name": "dispatched_at", "type": "timestamp"}, {"name": "deadline", "type": "timestamp"},
          {"name": "handled_at", "type": "timestamp"}, {"name": "closed_at", "type": "timestamp"},
          {"name": "rework_count", "type": "integer"}, {"name": "created_at", "type": "timestamp"},
          {"name": "updated_at", "type": "timestamp"}, {"name": "version", "type": "integer"}]',
        'created_at', 'viewer')
ON CONFLICT (name) DO UPDATE SET
    title = EXCLUDED.title, description = EXCLUDED.description, schema_name = 'twin',
    table_name = 'cases_current', geometry_type = 'Point', fields = EXCLUDED.fields,
    time_field = 'created_at', read_role = 'viewer', feature_count = 0, bbox = NULL,
    updated_at = now();
