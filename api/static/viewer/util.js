// Small helpers shared by the viewer's modules: requests to this server, DOM building, number
// formatting and the bilingual labels of common values.

// This file is served at <root>/viewer/static/util.js; the API lives at <root>/.
export const API_ROOT = new URL('../../', import.meta.url);

export function apiURL(path) {
  return new URL(path, API_ROOT).href;
}

// Requests the viewer itself has under way: tests (and the busy indicator) wait for them.
let inFlight = 0;
const busyListeners = new Set();

export function pendingRequests() {
  return inFlight;
}

export function onBusyChange(listener) {
  busyListeners.add(listener);
}

function busy(delta) {
  inFlight += delta;
  for (const listener of busyListeners) listener(inFlight);
}

// An error answer of the API: { code, message } (a few older bodies say description).
export class ApiError extends Error {
  constructor(status, body, url) {
    const text = body && (body.message || body.description || body.detail);
    super(text ? String(text) : `${status} for ${url}`);
    this.status = status;
    this.code = (body && body.code) || `http-${status}`;
  }
}

async function request(url, options) {
  busy(1);
  try {
    const response = await fetch(url, options);
    const type = response.headers.get('content-type') || '';
    const body = type.includes('json') ? await response.json().catch(() => null) : null;
    if (!response.ok) throw new ApiError(response.status, body, url);
    return body;
  } finally {
    busy(-1);
  }
}

export const GEOJSON = 'application/geo+json';

export function getJSON(path, accept = 'application/json') {
  return request(apiURL(path), { headers: { Accept: accept } });
}

export function postJSON(path, body) {
  return request(apiURL(path), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body),
  });
}

// el('div', {className: 'x', onclick: f}, child, 'text', ...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'style') Object.assign(node.style, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// --- numbers and values ---------------------------------------------------------------------

const NUMBER = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

export function formatNumber(value) {
  return NUMBER.format(value);
}

export function formatValue(value) {
  if (value === null || value === undefined || value === '') return '—';
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function formatLength(metres) {
  if (!Number.isFinite(metres)) return '—';
  return metres >= 1000 ? `${formatNumber(metres / 1000)} km` : `${formatNumber(metres)} m`;
}

export function formatArea(m2) {
  if (!Number.isFinite(m2)) return '—';
  return m2 >= 1e6 ? `${formatNumber(m2 / 1e6)} km²` : `${formatNumber(Math.round(m2))} m²`;
}

// Known values in the data, with the other language beside them.
const VALUE_LABELS = {
  完好: 'intact',
  破损: 'damaged',
  丢失: 'missing',
  废弃: 'abandoned',
  移除: 'removed',
  new_construction: '新增建设',
  vegetation_loss: '植被减少',
  vegetation_gain: '植被增加',
  new_water: '新增水体',
  open: '开启',
  closed: '关闭',
  inoperable: '失效',
  other: '其他',
};

export function valueLabel(value) {
  if (value === null || value === undefined || value === '') return '—';
  const text = String(value);
  const other = VALUE_LABELS[text];
  if (!other) return text;
  // Chinese first, as the maps' own titles have it.
  return /[\u3400-\u9fff]/.test(text) ? `${text} ${other}` : `${other} ${text.replace(/_/g, ' ')}`;
}

// Keys of answers (query, trace, isolation), with a Chinese name where one is usual.
const KEY_LABELS = {
  area: '范围 Area',
  components: '部件 Components',
  pipes: '管线 Pipes',
  unit_grids: '单元网格 Unit grids',
  buildings: '建筑 Buildings',
  imagery: '影像 Imagery',
  by_status: 'by status 按状态',
  by_class: 'by class 按类别',
  by_class_status: 'class × status',
  by_utility: 'by utility 按管线类别',
  by_subclass: 'by sub-class',
  by_material: 'by material 按材质',
  by_decade: 'by decade 按年代',
  by_use: 'by use 按用途',
  totals: '统计 Totals',
  isolated: '关阀区段 Isolated',
  cut_off: '连带停水 Cut off',
  service_points: '用户点 Service points',
  valves_to_close: '需关闭阀门 Valves to close',
  valves_already_closed: 'already closed',
  valves_inoperable: 'inoperable',
  affected_nodes_by_kind: 'affected nodes by kind',
  outage_area_m2: '停水面积 Outage area (m²)',
  warnings: '提示 Warnings',
  second_pass: 'if those valves fail',
};

export function keyLabel(key) {
  if (KEY_LABELS[key]) return KEY_LABELS[key];
  const text = String(key).replace(/_/g, ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// --- extents --------------------------------------------------------------------------------

export function validBbox(bbox) {
  return Array.isArray(bbox) && bbox.length === 4 && bbox.every(Number.isFinite)
    && bbox[0] <= bbox[2] && bbox[1] <= bbox[3];
}

export function collectionBbox(collection) {
  const bbox = collection?.extent?.spatial?.bbox?.[0];
  if (!Array.isArray(bbox)) return undefined;
  // A 3D bbox is [minx, miny, minz, maxx, maxy, maxz].
  return bbox.length === 6 ? [bbox[0], bbox[1], bbox[3], bbox[4]] : bbox;
}

// The union of extents, leaving out outliers: a layer whose extent is more than 25 times the
// median area (say the whole administrative district around a city) would otherwise shrink the
// city itself to a few pixels.
export function unionBounds(bboxes) {
  let boxes = bboxes.filter(validBbox);
  if (boxes.length === 0) return undefined;
  const area = (b) => Math.max((b[2] - b[0]) * (b[3] - b[1]), 1e-12);
  const sorted = boxes.map(area).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const usual = boxes.filter((b) => area(b) <= 25 * median);
  if (usual.length > 0) boxes = usual;
  const minLat = -85.05;
  const maxLat = 85.05;
  return [
    [Math.min(...boxes.map((b) => b[0])), Math.max(minLat, Math.min(...boxes.map((b) => b[1])))],
    [Math.max(...boxes.map((b) => b[2])), Math.min(maxLat, Math.max(...boxes.map((b) => b[3])))],
  ];
}

// The bbox of any GeoJSON geometry, feature or collection.
export function geometryBbox(geojson) {
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  const visit = (coords) => {
    if (typeof coords[0] === 'number') {
      box[0] = Math.min(box[0], coords[0]);
      box[1] = Math.min(box[1], coords[1]);
      box[2] = Math.max(box[2], coords[0]);
      box[3] = Math.max(box[3], coords[1]);
    } else {
      coords.forEach(visit);
    }
  };
  const walk = (g) => {
    if (!g) return;
    if (g.type === 'FeatureCollection') g.features.forEach(walk);
    else if (g.type === 'Feature') walk(g.geometry);
    else if (g.type === 'GeometryCollection') g.geometries.forEach(walk);
    else if (g.coordinates) visit(g.coordinates);
  };
  walk(geojson);
  return validBbox(box) ? box : undefined;
}

// A point to anchor a popup on: a point itself, a line's middle vertex, a polygon's bbox centre.
export function anchorOf(geometry) {
  if (!geometry) return undefined;
  if (geometry.type === 'Point') return geometry.coordinates;
  if (geometry.type === 'LineString') {
    return geometry.coordinates[Math.floor(geometry.coordinates.length / 2)];
  }
  if (geometry.type === 'MultiLineString' || geometry.type === 'MultiPoint') {
    return anchorOf({ type: geometry.type.slice(5), coordinates: geometry.coordinates[0] });
  }
  const box = geometryBbox(geometry);
  return box ? [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2] : undefined;
}
