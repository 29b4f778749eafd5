"""OGC API Features Parts 1 and 2: collections, items, one item, queryables."""

from __future__ import annotations

import json
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.deps import Catalog, ReadableLayer, catalog, connection, principal, settings
from layers import features as feat
from layers.cql import compile_filter
from layers.kinds import CollectionKind
from layers.registry import Layer
from twin.crs import CRS84, check_output_crs, output_crs_uris, parse_crs
from twin.errors import InvalidParameter, LimitExceeded
from twin.settings import Settings

router = APIRouter(tags=["OGC API Features"])

GEOJSON = "application/geo+json"
MAX_OFFSET = 10**12
_RESERVED = {
    "limit",
    "offset",
    "bbox",
    "bbox-crs",
    "crs",
    "datetime",
    "properties",
    "f",
    "filter",
    "filter-lang",
    "filter-crs",
}
_JSON_TYPES = {
    "integer": "integer",
    "double": "number",
    "boolean": "boolean",
    "text": "string",
    "date": "string",
    "timestamp": "string",
    "time": "string",
    "json": "object",
}


def feature_id(feature_id: Annotated[str, Path(alias="featureId")]) -> str:
    """The feature a route names (a dependency, so that it follows the collection's)."""
    return feature_id


FeatureId = Annotated[str, Depends(feature_id)]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def collection_doc(
    layer: Layer,
    base: str,
    temporal: list[str | None] | None = None,
    kind: CollectionKind | None = None,
) -> dict:
    """A collection as OGC API Features describes it; ``kind`` says what kind of editable
    collection it is (null: read-only), so clients need not read meaning into its id."""
    href = f"{base}/collections/{layer.name}"
    doc: dict[str, Any] = {
        "id": layer.name,
        "title": layer.title,
        "description": layer.description,
        "itemType": "feature",
        "kind": kind.describe() if kind is not None else None,
        "geometryType": layer.geometry_type,
        "extent": {
            "spatial": {"bbox": [list(layer.bbox)] if layer.bbox else [], "crs": CRS84},
        },
        "crs": output_crs_uris(),
        "storageCrs": CRS84,
        "links": [
            {"href": href, "rel": "self", "type": "application/json", "title": layer.title},
            {"href": f"{href}/items", "rel": "items", "type": GEOJSON, "title": "Features"},
            {
                "href": f"{href}/queryables",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                "type": "application/schema+json",
                "title": "Queryables",
            },
            {
                "href": f"{href}/tiles/WebMercatorQuad/tilejson.json",
                "rel": "describedby",
                "type": "application/json",
                "title": "TileJSON (vector tiles)",
            },
            {
                "href": f"{href}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}",
                "rel": "item",
                "type": "application/vnd.mapbox-vector-tile",
                "title": "Vector tiles",
                "templated": True,
            },
        ],
    }
    if temporal is not None and layer.time_field:
        doc["extent"]["temporal"] = {
            "interval": [temporal],
            "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
        }
    return doc


@router.get("/collections", summary="The published layers")
async def collections(request: Request, cat: Annotated[Catalog, Depends(catalog)]) -> dict:
    base = _base(request)
    return {
        "links": [
            {"href": f"{base}/collections", "rel": "self", "type": "application/json"},
        ],
        "collections": [
            collection_doc(layer, base, kind=cat.kind(layer.name))
            for layer in cat.visible(principal(request))
        ],
        "crs": output_crs_uris(),
    }


@router.get("/collections/{collectionId}", summary="One published layer")
async def collection(
    request: Request,
    layer: ReadableLayer,
    cat: Annotated[Catalog, Depends(catalog)],
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
) -> dict:
    temporal = await feat.temporal_extent(conn, layer)
    return collection_doc(layer, _base(request), temporal, cat.kind(layer.name))


@router.get("/collections/{collectionId}/queryables", summary="Queryable properties")
async def queryables(request: Request, layer: ReadableLayer) -> Response:
    props: dict[str, Any] = {"geom": {"$ref": "https://geojson.org/schema/Geometry.json"}}
    for f in layer.fields:
        props[f.name] = {"type": _JSON_TYPES.get(f.type, "string")}
        if f.type in ("date", "timestamp"):
            props[f.name]["format"] = "date" if f.type == "date" else "date-time"
    doc = {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": f"{_base(request)}/collections/{layer.name}/queryables",
        "type": "object",
        "title": layer.title,
        "properties": props,
    }
    return Response(feat.dumps(doc), media_type="application/schema+json")


def _items_query(
    request: Request,
    layer: Layer,
    cfg: Settings,
    limit: int | None,
    offset: int,
    bbox: str | None,
    bbox_crs: str | None,
    crs: str | None,
    datetime_: str | None,
    properties: str | None,
) -> feat.ItemsQuery:
    max_limit = cfg.api.items_max_limit
    if limit is None:
        limit = cfg.api.items_default_limit
    if limit < 1:
        raise InvalidParameter("limit must be at least 1")
    if limit > max_limit:
        raise LimitExceeded(
            f"limit {limit} is over the cap of {max_limit} items per page "
            "(TWIN_ITEMS_MAX_LIMIT): page through with offset, or follow the 'next' links"
        )
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidParameter(f"offset must be between 0 and {MAX_OFFSET}")
    out_crs = parse_crs(crs) if crs else parse_crs("CRS84")
    check_output_crs(out_crs)
    in_crs = parse_crs(bbox_crs) if bbox_crs else parse_crs("CRS84")
    if bbox_crs and bbox is None:
        raise InvalidParameter("bbox-crs given without bbox")
    check_output_crs(in_crs)
    q = feat.ItemsQuery(limit=limit, offset=offset, crs=out_crs, bbox_crs=in_crs)
    if bbox is not None:
        q.bbox = feat.parse_bbox(bbox, in_crs)
        feat.check_bbox_area(q.bbox, in_crs, cfg.limits.items_max_bbox_km2)
    if datetime_ is not None:
        q.datetime = feat.parse_datetime(datetime_)
    if properties is not None:
        names = [p.strip() for p in properties.split(",") if p.strip()]
        q.properties = feat.check_properties(layer, names)
    q.filter = _filter(request, layer)
    for key, value in request.query_params.items():
        if key in _RESERVED:
            continue
        if key not in layer.field_names:
            raise InvalidParameter(
                f"unknown query parameter {key!r}: use limit, offset, bbox, bbox-crs, crs, "
                f"datetime, properties or a property name of {layer.name!r}"
            )
        q.equals[key] = value
    return q


def _filter(request: Request, layer: Layer) -> tuple[Any, list[Any]] | None:
    """The CQL2 ``filter`` (Part 3), compiled with every value bound."""
    text = request.query_params.get("filter")
    if text is None:
        return None
    lang = request.query_params.get("filter-lang", "cql2-text")
    crs = request.query_params.get("filter-crs")
    if crs and parse_crs(crs).kind != "crs84" and parse_crs(crs).epsg != 4326:
        raise InvalidParameter("filter-crs must be CRS84: geometries in filters are lon/lat")
    return compile_filter(text, lang, layer)


def _page_links(request: Request, q: feat.ItemsQuery, returned: int, matched: int) -> list[dict]:
    self_url = str(request.url)
    links = [
        {"href": self_url, "rel": "self", "type": GEOJSON},
        {
            "href": f"{_base(request)}/collections/{request.path_params['collectionId']}",
            "rel": "collection",
            "type": "application/json",
        },
    ]
    if q.offset + returned < matched:
        nxt = request.url.include_query_params(offset=q.offset + q.limit, limit=q.limit)
        links.append({"href": str(nxt), "rel": "next", "type": GEOJSON})
    if q.offset > 0:
        prev = request.url.include_query_params(offset=max(0, q.offset - q.limit), limit=q.limit)
        links.append({"href": str(prev), "rel": "prev", "type": GEOJSON})
    return links


@router.get(
    "/collections/{collectionId}/items",
    summary="Features of a layer",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
async def items(
    request: Request,
    layer: ReadableLayer,
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    cfg: Annotated[Settings, Depends(settings)],
    limit: Annotated[int | None, Query(description="Items per page (default 10)")] = None,
    offset: Annotated[int, Query(description="Items to skip")] = 0,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in bbox-crs")] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description="CRS of bbox")] = None,
    crs: Annotated[str | None, Query(description="CRS of the response geometries")] = None,
    datetime: Annotated[str | None, Query(description="Instant or interval (RFC 3339)")] = None,
    properties: Annotated[str | None, Query(description="Comma-separated properties")] = None,
    filter_: Annotated[
        str | None, Query(alias="filter", description="CQL2 filter (OGC API Features Part 3)")
    ] = None,
    filter_lang: Annotated[
        str, Query(alias="filter-lang", description="cql2-text (default) or cql2-json")
    ] = "cql2-text",
) -> Response:
    q = _items_query(request, layer, cfg, limit, offset, bbox, bbox_crs, crs, datetime, properties)
    features, matched = await feat.fetch_items(conn, layer, q)
    envelope = {
        "numberMatched": matched,
        "numberReturned": len(features),
        "links": _page_links(request, q, len(features), matched),
    }
    body = (
        '{"type":"FeatureCollection","features":['
        + ",".join(features)
        + "],"
        + feat.dumps(envelope)[1:]
    )
    return Response(body, media_type=GEOJSON, headers={"Content-Crs": f"<{q.crs.uri}>"})


@router.get(
    "/collections/{collectionId}/items/{featureId}",
    summary="One feature",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
async def item(
    request: Request,
    layer: ReadableLayer,
    feature_id: FeatureId,
    conn: Annotated[psycopg.AsyncConnection, Depends(connection)],
    crs: Annotated[str | None, Query(description="CRS of the response geometry")] = None,
    properties: Annotated[str | None, Query(description="Comma-separated properties")] = None,
) -> Response:
    out_crs = parse_crs(crs) if crs else parse_crs("CRS84")
    check_output_crs(out_crs)
    names = None
    if properties is not None:
        names = feat.check_properties(
            layer, [p.strip() for p in properties.split(",") if p.strip()]
        )
    body = await feat.fetch_item(conn, layer, feature_id, out_crs, names)
    base = _base(request)
    links = [
        {"href": str(request.url), "rel": "self", "type": GEOJSON},
        {
            "href": f"{base}/collections/{layer.name}",
            "rel": "collection",
            "type": "application/json",
        },
    ]
    body = body[:-1] + ',"links":' + feat.dumps(links) + "}"
    headers = {"Content-Crs": f"<{out_crs.uri}>"}
    if "version" in layer.field_names:  # editable: the version is the ETag for If-Match
        version = json.loads(body)["properties"].get("version")
        if version is not None:
            headers["ETag"] = f'"{version}"'
    return Response(body, media_type=GEOJSON, headers=headers)
