"""Settings, split by concern, read from TWIN_* environment variables (and a .env file).

Built by the caller (`Settings()` in the CLI, the app factory or a test) and passed down; nothing
reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_CONFIG = SettingsConfigDict(env_prefix="TWIN_", env_file=".env", extra="ignore")


class DatabaseSettings(BaseSettings):
    """Where the data lives: an external PostGIS, or the embedded cluster."""

    model_config = _CONFIG

    database_url: str | None = Field(
        default=None, description="External PostGIS; when unset the embedded cluster is used"
    )
    data_dir: Path = Field(default=Path(".twin"), description="Embedded cluster lives in DIR/pg")
    pg_port: int = Field(default=5433, description="Preferred port of the embedded cluster")
    pool_min_size: int = 1
    pool_max_size: int = 10
    statement_timeout_ms: int = Field(default=30_000, ge=0)


class ApiSettings(BaseSettings):
    """The HTTP service."""

    model_config = _CONFIG

    host: str = "127.0.0.1"
    port: int = 8000
    items_default_limit: int = Field(default=10, ge=1)
    items_max_limit: int = Field(default=10_000, ge=1)
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    viewer_assets: Path | None = Field(
        default=None, description="node_modules with maplibre-gl and swagger-ui-dist"
    )


class TileSettings(BaseSettings):
    """Vector tiles."""

    model_config = _CONFIG

    tile_extent: int = 4096
    tile_buffer: int = 64
    tile_max_zoom: int = Field(default=22, ge=0, le=30)
    tile_max_features: int = Field(default=200_000, ge=1)
    tile_cache_seconds: int = Field(
        default=0,
        ge=0,
        description="Cache-Control max-age of tiles; 0: clients revalidate with the ETag, so an "
        "edit shows at once",
    )
    tile_cells: int = Field(
        default=16, ge=1, le=256, description="Cells per tile side when points are aggregated"
    )
    tile_cache: Literal["memory", "redis", "off"] = Field(
        default="memory", description="Server-side tile cache: in-process LRU, Redis, or none"
    )
    tile_cache_max_mb: int = Field(default=256, ge=1, description="Size of the in-process cache")
    tile_cache_redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis for tile_cache=redis"
    )
    maps_dir: Path | None = Field(
        default=None, description="A folder of .toml map definitions added to the packaged ones"
    )


class GridSettings(BaseSettings):
    """The unified grid (GB/T 30428.1)."""

    model_config = _CONFIG

    grid_unit_code_width: Literal[14, 15] = Field(
        default=14, description="Unit-grid code width: 14 (CJ/T 213) or 15 (DB11 and others)"
    )
    grid_tolerance_m2: float = Field(
        default=1.0, ge=0, description="Gaps, overlaps and overhangs smaller than this are ignored"
    )
    grid_sliver_width_m: float = Field(
        default=0.5, ge=0, description="...or thinner than this on average (CRS edge noise)"
    )
    locate_max_points: int = Field(default=2_000_000, ge=1)


class ComponentSettings(BaseSettings):
    """City management components (GB/T 30428.2)."""

    model_config = _CONFIG

    component_code_width: Literal[16, 17] = Field(
        default=16, description="16 digits (2-digit minor class) or 17 (3-digit, newer series)"
    )
    component_classes_file: Path | None = Field(
        default=None,
        description="A local CSV of extension classes (扩展部件) added to the standard",
    )
    district_code: str | None = Field(
        default=None, description="District for codes of components outside every unit grid"
    )
    component_max_outside_km: float = Field(
        default=10.0,
        ge=0,
        description="An import refuses components farther than this from the district "
        "(unless --allow-outside): a wrong CRS or swapped lon/lat, most likely",
    )


class RasterSettings(BaseSettings):
    """The scene catalog."""

    model_config = _CONFIG

    raster_dir: Path | None = Field(
        default=None,
        description="Where scenes converted to COG are kept (default: DATA_DIR/rasters)",
    )
    raster_tile_size: int = Field(default=256, ge=64, le=1024)
    raster_max_zonal_cells: int = Field(default=20_000, ge=1)


class QuerySettings(BaseSettings):
    """Spatial queries ("what is inside this polygon") and planners' reports."""

    model_config = _CONFIG

    query_max_area_km2: float = Field(
        default=25.0, gt=0, description="Largest posted polygon or buffer one query may cover"
    )
    query_max_buffer_m: float = Field(
        default=5_000.0, gt=0, description="Largest buffer distance a query may ask for"
    )
    buildings_layer: str = Field(
        default="buildings",
        description="Published layer of building footprints (fields floors, area_m2)",
    )


class PipelineSettings(BaseSettings):
    """Pipe networks: traces and burst isolation."""

    model_config = _CONFIG

    isolation_control_valves_closable: bool = Field(
        default=False,
        description="Count control valves (PRV, TCV, ...) as valves an isolation may close; "
        "false: water passes them and they bound no valve segment, as in WNTR",
    )


class AuthSettings(BaseSettings):
    """Who may read and edit what: API keys, bearer JWTs from a configured issuer, rate limits."""

    model_config = _CONFIG

    auth_jwks: str | None = Field(
        default=None, description="The issuer's keys: a JWKS file path or an http(s) URL"
    )
    auth_issuer: str | None = Field(default=None, description="Required `iss` of JWTs")
    auth_audience: str | None = Field(default=None, description="Required `aud` of JWTs")
    auth_role_claim: str = Field(default="role", description="Claim holding the role")
    auth_department_claim: str = Field(default="department", description="Claim: department")
    auth_layers_claim: str = Field(default="layers", description="Claim: granted layers")
    auth_role_map: dict[str, str] = Field(
        default_factory=dict,
        description='Claim values to roles, e.g. {"gis-admins": "admin"} (JSON)',
    )
    auth_key_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long a checked API key is trusted before re-reading"
    )
    rate_limit_per_minute: int = Field(
        default=6000, ge=0, description="Requests per minute per key or token (0: no limit)"
    )
    rate_limit_anonymous_per_minute: int = Field(
        default=6000, ge=0, description="Requests per minute per anonymous client address"
    )


class LimitSettings(BaseSettings):
    """What one request may ask of the server, and how long it waits for the database.

    The page size cap (``items_max_limit``), the statement timeout (``statement_timeout_ms``),
    the pool size and the batch limits of single routes live with their own concern.
    """

    model_config = _CONFIG

    max_body_mb: float = Field(
        default=16.0, gt=0, description="Largest request body in MiB (413 over it)"
    )
    max_bulk_body_mb: float = Field(
        default=256.0,
        gt=0,
        description="Largest body in MiB of the bulk routes (POST /grid/locate: points files)",
    )
    items_max_bbox_km2: float = Field(
        default=10_000.0, gt=0, description="Largest bbox of one items request, in km² (422)"
    )
    pool_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long a request waits for a free database connection (then 503)",
    )


class SensorSettings(BaseSettings):
    """The live twin: sensor readings, their partitions and the MQTT feed."""

    model_config = _CONFIG

    readings_retention_days: int = Field(
        default=90, ge=1, description="Days of readings kept; older partitions are dropped"
    )
    readings_partitions_ahead_days: int = Field(
        default=3, ge=1, description="Daily partitions of readings made ahead of today"
    )
    readings_future_tolerance_s: float = Field(
        default=300.0, ge=0, description="How far ahead of the server clock a reading may be"
    )
    readings_max_rows: int = Field(
        default=2_000_000, ge=1, description="Most readings one ingest request may carry"
    )
    sensors_sweep_s: float = Field(
        default=30.0, gt=0, description="How often silent sensors are marked stale"
    )
    mqtt_url: str | None = Field(
        default=None, description="A broker to take readings from (mqtt://host:1883)"
    )
    mqtt_topic: str = Field(default="citytwin/readings/#", description="Topic filter of readings")
    mqtt_client_id: str = Field(
        default="citytwin-readings",
        description="Client id of the persistent MQTT session: the broker keeps what arrives "
        "while the consumer is away under this id (run one consumer per id)",
    )
    mqtt_batch_size: int = Field(default=5000, ge=1, description="Readings stored per batch")
    mqtt_batch_ms: int = Field(
        default=500, ge=10, description="...or those received within this many ms, if fewer"
    )
    mqtt_buffer_max: int = Field(
        default=200_000,
        ge=1,
        description="Readings kept in memory while the database is away; beyond, the oldest "
        "are dropped (and counted)",
    )


class Settings(BaseSettings):
    """Everything, grouped by concern."""

    model_config = _CONFIG

    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    tiles: TileSettings = Field(default_factory=TileSettings)
    grid: GridSettings = Field(default_factory=GridSettings)
    components: ComponentSettings = Field(default_factory=ComponentSettings)
    rasters: RasterSettings = Field(default_factory=RasterSettings)
    query: QuerySettings = Field(default_factory=QuerySettings)
    pipelines: PipelineSettings = Field(default_factory=PipelineSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    sensors: SensorSettings = Field(default_factory=SensorSettings)

    @property
    def raster_dir(self) -> Path:
        return self.rasters.raster_dir or self.db.data_dir / "rasters"
