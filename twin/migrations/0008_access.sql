-- Access control: roles public < viewer < editor < admin, API keys (stored hashed), per-layer
-- read and edit grants, and the audit log of every write and admin action.
CREATE TABLE twin.api_keys (
    id           text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{8,16}$'),  -- shown in lists
    secret_hash  text NOT NULL,  -- SHA-256 of the secret part; the secret is never stored
    name         text NOT NULL DEFAULT '',
    role         text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    department   text,           -- an editor edits only components of this department
    layers       text[],         -- NULL: every layer the role may read
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Who may read and edit each published layer. A department on a layer reserves its edits to
-- that department's editors (and admins).
ALTER TABLE twin.layers
    ADD COLUMN read_role text NOT NULL DEFAULT 'public'
        CHECK (read_role IN ('public', 'viewer', 'editor', 'admin')),
    ADD COLUMN edit_role text NOT NULL DEFAULT 'editor'
        CHECK (edit_role IN ('editor', 'admin')),
    ADD COLUMN department text;

ALTER TABLE twin.raster_collections
    ADD COLUMN read_role text NOT NULL DEFAULT 'public'
        CHECK (read_role IN ('public', 'viewer', 'editor', 'admin'));

CREATE TABLE twin.audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text NOT NULL,   -- key:<id>, jwt:<issuer>:<subject> or cli:<user>
    role           text NOT NULL,
    department     text,
    action         text NOT NULL,   -- create, replace, patch, delete, restore, key.create, ...
    target         text,            -- a collection, a key id, a network, a change set
    feature_id     bigint,
    version_before integer,
    version_after  integer,
    detail         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON twin.audit_log (at);
CREATE INDEX audit_log_target ON twin.audit_log (target, feature_id);
