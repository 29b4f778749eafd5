// citytwin offline viewer.
//
// Reads the OGC API collection list, adds one MVT source per collection (from its TileJSON) and
// styles it by geometry type. Everything comes from this server: no base map, no glyphs, no
// sprites, so there are no symbol (text) layers at all.

/* global maplibregl */

// This file is served at <root>/viewer/static/viewer.js; the API lives at <root>/.
const API_ROOT = new URL('../../', import.meta.url);

const BACKGROUND = '#f2f1ec';
const DENSE_MINZOOM = 15; // components and pipe nodes: thousands of points per tile below this
const FALLBACK_VIEW = { center: [116.5, 31.75], zoom: 12 }; // Lu'an, when no extent is known
const CLICK_TOLERANCE_PX = 4;
const WIDTH_FIELD = 'width_m'; // line layers carrying it (streets) are drawn at their true width
const EARTH_CIRCUMFERENCE_M = 40075016.686;
const TILE_SIZE_PX = 512; // MapLibre's world is 512 px wide at zoom 0

// CJJ 61 utility colours. Water supply JS is rgb(0,255,255) in the standard; drawn darker so it
// reads on a light background. Sewer and storm are both drainage PS; storm is dashed.
const UTILITY = {
  water: 'rgb(0,175,200)',
  drainage: 'rgb(76,57,38)',
  gas: 'rgb(255,0,255)',
  heat: 'rgb(255,128,0)',
  power: 'rgb(255,0,0)',
  telecom: 'rgb(0,170,0)',
};

// CJJ 61 class codes, as pipe networks' TileJSON names them.
const CLASS_COLORS = {
  JS: UTILITY.water, PS: UTILITY.drainage, RQ: UTILITY.gas, RL: UTILITY.heat,
  DL: UTILITY.power, TX: UTILITY.telecom,
};

// Sample-city collections. rank sets the draw order (lower is drawn first, further down).
const KNOWN_STYLES = {
  boundary: { rank: 0, fill: '#fffefa', fillOpacity: 0.9, color: '#4a4f57', width: 2.5 },
  grid_district: { rank: 1, fill: '#6a3d9a', fillOpacity: 0, color: '#6a3d9a', width: 2.4 },
  grid_street: { rank: 2, fill: '#8e6cc0', fillOpacity: 0, color: '#8e6cc0', width: 1.7 },
  grid_community: { rank: 3, fill: '#a58fd0', fillOpacity: 0, color: '#a58fd0', width: 1.1 },
  grid_unit: {
    rank: 4, fill: '#c4b8e2', fillOpacity: 0, color: '#b9acd9', width: 0.6, minzoom: 14,
  },
  blocks: { rank: 10, fill: '#e4dfd1', fillOpacity: 0.65, color: '#d2cab4', width: 0.6 },
  buildings: { rank: 11, fill: '#cbbfa9', fillOpacity: 0.95, color: '#a8987c', width: 0.6 },
  changes_truth: { rank: 16, fill: '#e4572e', fillOpacity: 0.3, color: '#c4411d', width: 1.2 },
  streets: { rank: 20, color: '#d6d3cb', width: 3 },
  storm_pipes: { rank: 30, color: UTILITY.drainage, width: 1.2, dash: [3, 2] },
  sewer_pipes: { rank: 31, color: UTILITY.drainage, width: 1.2 },
  water_pipes: { rank: 32, color: UTILITY.water, width: 1.2 },
  gas_pipes: { rank: 33, color: UTILITY.gas, width: 1.2 },
  components: { rank: 40, color: '#34495e', radius: 2.5, minzoom: DENSE_MINZOOM },
  storm_nodes: { rank: 41, color: UTILITY.drainage, radius: 2.5, minzoom: DENSE_MINZOOM },
  sewer_nodes: { rank: 42, color: UTILITY.drainage, radius: 2.5, minzoom: DENSE_MINZOOM },
  water_nodes: { rank: 43, color: UTILITY.water, radius: 2.5, minzoom: DENSE_MINZOOM },
  gas_nodes: { rank: 44, color: UTILITY.gas, radius: 2.5, minzoom: DENSE_MINZOOM },
  pipe_findings: { rank: 52, color: '#d7263d', radius: 4 },
};

// Draw rank of collections we do not know, by kind: user polygons sit above buildings, user
// lines above the pipes, user points on top.
const AUTO_RANK = { polygon: 14, line: 35, point: 50, mixed: 45 };

// User-imported collections named after a utility get its CJJ 61 colour: a whole word of the id
// (split at '_', '-', ...) or a Chinese utility name anywhere in it. Whole words, so that
// 'terrain' is not taken for rain water.
const UTILITY_NAMES = [
  [UTILITY.water, ['water', 'supply', 'hydrant', 'hydrants', 'js'], ['给水', '供水']],
  [UTILITY.drainage, ['sewer', 'storm', 'drain', 'drainage', 'rain', 'manhole', 'manholes',
    'ps', 'ys', 'ws'], ['排水', '雨水', '污水']],
  [UTILITY.gas, ['gas', 'rq'], ['燃气']],
  [UTILITY.heat, ['heat', 'heating', 'rl'], ['热力']],
  [UTILITY.power, ['power', 'electric', 'cable', 'cables', 'dl'], ['电力']],
  [UTILITY.telecom, ['telecom', 'fiber', 'fibre', 'tx'], ['通信']],
];

const AUTO_PALETTE = [
  '#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#e377c2', '#17becf', '#bcbd22', '#8c564b',
  '#ff7f0e', '#393b79', '#637939', '#843c39',
];

const GEOMETRY_TYPES = {
  point: ['Point', 'MultiPoint'],
  line: ['LineString', 'MultiLineString'],
  polygon: ['Polygon', 'MultiPolygon'],
};

let identifySequence = 0; // a slow answer for an earlier click must not replace a newer popup

const statusState = { lngLat: null, zoom: null, message: '', error: false };

// ---------------------------------------------------------------------------------------------
// Fetching

async function fetchJSON(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!response.ok) {
    throw new Error(`${response.status} ${response.statusText} for ${url}`);
  }
  return response.json();
}

function apiURL(path) {
  return new URL(path, API_ROOT).href;
}

async function loadCollections() {
  const body = await fetchJSON(apiURL('collections'));
  return body.collections || [];
}

async function loadTileJSON(collection) {
  const id = encodeURIComponent(collection.id);
  return fetchJSON(apiURL(`collections/${id}/tiles/WebMercatorQuad/tilejson.json`));
}

async function loadFeature(collectionId, featureId) {
  const collection = encodeURIComponent(collectionId);
  const path = `collections/${collection}/items/${encodeURIComponent(featureId)}`;
  const response = await fetch(apiURL(path), { headers: { Accept: 'application/geo+json' } });
  if (!response.ok) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  return response.json();
}

// Pair each collection with its TileJSON; collections without vector tiles are left out.
async function loadEntries() {
  const collections = await loadCollections();
  const results = await Promise.allSettled(collections.map(loadTileJSON));
  const entries = [];
  const skipped = [];
  results.forEach((result, index) => {
    const collection = collections[index];
    if (result.status === 'fulfilled') {
      entries.push(makeEntry(collection, result.value, index));
    } else {
      skipped.push(collection.id);
    }
  });
  entries.sort((a, b) => a.style.rank - b.style.rank || a.order - b.order);
  return { entries, skipped };
}

// ---------------------------------------------------------------------------------------------
// Styling

function geometryKind(geometryType) {
  const type = String(geometryType || '').toLowerCase();
  if (type.includes('polygon')) return 'polygon';
  if (type.includes('line')) return 'line';
  if (type.includes('point')) return 'point';
  return 'mixed';
}

function tileGeometryType(collection, tilejson) {
  if (collection.geometryType) return collection.geometryType;
  const layers = tilejson.vector_layers || [];
  const layer = layers.find((l) => l.id === collection.id) || layers[0];
  return layer ? layer.geometry_type : undefined;
}

function hashString(text) {
  let hash = 0;
  for (const char of text) {
    hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  }
  return hash;
}

function utilityColor(id) {
  const words = new Set(id.toLowerCase().split(/[^a-z0-9]+/));
  const named = ([, english, chinese]) =>
    english.some((word) => words.has(word)) || chinese.some((word) => id.includes(word));
  const match = UTILITY_NAMES.find(named);
  return match ? match[0] : undefined;
}

function autoColor(id) {
  return utilityColor(id) || AUTO_PALETTE[hashString(id) % AUTO_PALETTE.length];
}

function autoStyle(id, kind) {
  const color = autoColor(id);
  const dense = /(^|_)(nodes|components)$/.test(id);
  return {
    rank: AUTO_RANK[kind],
    color,
    fill: color,
    fillOpacity: 0.25,
    width: kind === 'polygon' ? 1 : 1.5,
    radius: 3,
    minzoom: dense ? DENSE_MINZOOM : undefined,
  };
}

function makeEntry(collection, tilejson, order) {
  const kind = geometryKind(tileGeometryType(collection, tilejson));
  // Known sample-city collections override the automatic style; anything else keeps it.
  const layers = tilejson.vector_layers || [];
  const vectorLayer = layers.find((l) => l.id === collection.id) || layers[0];
  // A pipe network's TileJSON names its CJJ 61 class; the class colour wins over a guess from
  // the name (water supply keeps the darker cyan that reads on a light background).
  const classColor = vectorLayer && vectorLayer.utility
    ? (CLASS_COLORS[vectorLayer.utility] || vectorLayer.color) : undefined;
  const style = {
    ...autoStyle(collection.id, kind),
    ...(classColor ? { color: classColor, fill: classColor } : {}),
    ...KNOWN_STYLES[collection.id],
  };
  const bbox = collectionBbox(collection) || tilejson.bounds;
  return {
    id: collection.id,
    title: collection.title || collection.id,
    bbox,
    widthField: vectorLayer?.fields && WIDTH_FIELD in vectorLayer.fields ? WIDTH_FIELD : null,
    latitude: validBbox(bbox) ? (bbox[1] + bbox[3]) / 2 : 0,
    kind,
    style,
    order,
    tilejson,
    sourceLayer: vectorLayer ? vectorLayer.id : collection.id,
    layerIds: [],
  };
}

// Line widths and circle radii grow with zoom so the city reads at z12 and at z19 alike.
function zoomScaled(base) {
  return ['interpolate', ['exponential', 1.6], ['zoom'], 11, base * 0.5, 15, base, 19, base * 4];
}

// A width in metres (a feature property) as pixels: exact from z12 up (exponential base 2 is
// how Web Mercator scales), never thinner than 1 px at z12. Metres per pixel use the cosine of
// the layer's mid latitude, close enough over a city.
function metricWidth(field, latitude) {
  const metresPerPixelZ0 = (EARTH_CIRCUMFERENCE_M * Math.cos((latitude * Math.PI) / 180))
    / TILE_SIZE_PX;
  const pixels = (zoom) => ['*', ['to-number', ['get', field], 0], 2 ** zoom / metresPerPixelZ0];
  return ['interpolate', ['exponential', 2], ['zoom'], 12, ['max', 1, pixels(12)], 22, pixels(22)];
}

function geometryFilter(kind) {
  return ['match', ['geometry-type'], GEOMETRY_TYPES[kind], true, false];
}

function fillLayer(entry) {
  return {
    type: 'fill',
    paint: {
      'fill-color': entry.style.fill,
      'fill-opacity': entry.style.fillOpacity,
    },
  };
}

function lineLayer(entry, suffix) {
  const { color, width, dash } = entry.style;
  // Butt caps where round ones would show: dashes, and wide streets ending at the city's edge.
  const cap = dash || entry.widthField ? 'butt' : 'round';
  const layer = {
    type: 'line',
    layout: { 'line-join': 'round', 'line-cap': cap },
    paint: { 'line-color': color, 'line-width': zoomScaled(width) },
  };
  if (dash) layer.paint['line-dasharray'] = dash;
  if (suffix === 'outline') layer.paint['line-width'] = width; // outlines keep a constant width
  if (suffix === 'line' && entry.widthField) {
    layer.paint['line-width'] = metricWidth(entry.widthField, entry.latitude);
  }
  return layer;
}

function circleLayer(entry) {
  return {
    type: 'circle',
    paint: {
      'circle-color': entry.style.color,
      'circle-radius': zoomScaled(entry.style.radius),
      'circle-stroke-color': '#ffffff',
      'circle-stroke-width': 0.8,
    },
  };
}

// Which MapLibre layers a collection gets: [suffix, builder, geometry filter or null].
function layerPlan(kind) {
  const plans = {
    polygon: [['fill', fillLayer], ['outline', lineLayer]],
    line: [['line', lineLayer]],
    point: [['circle', circleLayer]],
  };
  if (kind in plans) return plans[kind].map(([suffix, build]) => [suffix, build, null]);
  // Unknown or mixed geometry: one layer per type, each filtered to its own geometries.
  return [
    ['fill', fillLayer, 'polygon'],
    ['outline', lineLayer, 'polygon'],
    ['line', lineLayer, 'line'],
    ['circle', circleLayer, 'point'],
  ];
}

function layersFor(entry) {
  return layerPlan(entry.kind).map(([suffix, build, filterKind]) => {
    const layer = {
      ...build(entry, suffix),
      id: `${entry.id}::${suffix}`,
      source: entry.id,
      'source-layer': entry.sourceLayer,
    };
    if (filterKind) layer.filter = geometryFilter(filterKind);
    if (entry.style.minzoom !== undefined) layer.minzoom = entry.style.minzoom;
    entry.layerIds.push(layer.id);
    return layer;
  });
}

function sourceFor(entry) {
  const { tiles, minzoom, maxzoom, bounds, attribution } = entry.tilejson;
  const source = { type: 'vector', tiles, minzoom: minzoom ?? 0, maxzoom: maxzoom ?? 22 };
  if (validBbox(bounds)) source.bounds = bounds;
  if (attribution) source.attribution = attribution;
  return source;
}

// A style with no glyphs and no sprite: nothing for MapLibre to fetch but our own tiles.
function buildStyle(entries) {
  const sources = {};
  const background = { id: 'background', type: 'background' };
  const layers = [{ ...background, paint: { 'background-color': BACKGROUND } }];
  for (const entry of entries) {
    sources[entry.id] = sourceFor(entry);
    layers.push(...layersFor(entry));
  }
  return { version: 8, name: 'citytwin', sources, layers };
}

// ---------------------------------------------------------------------------------------------
// Extent

function collectionBbox(collection) {
  const bbox = collection.extent?.spatial?.bbox?.[0];
  if (!Array.isArray(bbox)) return undefined;
  // A 3D bbox is [minx, miny, minz, maxx, maxy, maxz].
  return bbox.length === 6 ? [bbox[0], bbox[1], bbox[3], bbox[4]] : bbox;
}

function validBbox(bbox) {
  return Array.isArray(bbox) && bbox.length === 4 && bbox.every(Number.isFinite)
    && bbox[0] <= bbox[2] && bbox[1] <= bbox[3];
}

// Union of the collection extents, clamped to the Web Mercator latitude range.
// The union of the collections' extents, leaving out outliers: a layer whose extent is more
// than 25 times the median area (say the whole administrative district around a city) would
// otherwise shrink the city itself to a few pixels.
function unionBounds(entries) {
  let boxes = entries.map((e) => e.bbox).filter(validBbox);
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

// ---------------------------------------------------------------------------------------------
// Side panel: layer toggles with legend swatches, and the status line

function swatchFor(entry) {
  const swatch = document.createElement('span');
  const { color, fill, fillOpacity, dash } = entry.style;
  const kind = entry.kind === 'mixed' ? 'polygon' : entry.kind;
  swatch.className = `swatch ${kind}`;
  if (kind === 'polygon') {
    swatch.style.borderColor = color;
    swatch.style.background = fillOpacity > 0 ? fill : 'transparent';
  } else if (kind === 'line') {
    swatch.style.borderTopColor = color;
    if (dash) swatch.classList.add('dashed');
  } else {
    swatch.style.background = color;
  }
  return swatch;
}

function setEntryVisible(map, entry, visible) {
  for (const layerId of entry.layerIds) {
    map.setLayoutProperty(layerId, 'visibility', visible ? 'visible' : 'none');
  }
}

function layerRow(map, entry) {
  const item = document.createElement('li');
  item.dataset.collection = entry.id;
  const label = document.createElement('label');
  label.title = entry.id;
  const checkbox = document.createElement('input');
  checkbox.type = 'checkbox';
  checkbox.checked = true;
  checkbox.addEventListener('change', () => setEntryVisible(map, entry, checkbox.checked));
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = entry.title;
  label.append(checkbox, swatchFor(entry), name);
  if (entry.style.minzoom !== undefined) {
    const hint = document.createElement('span');
    hint.className = 'minzoom';
    hint.textContent = `z≥${entry.style.minzoom}`;
    label.append(hint);
  }
  item.append(label);
  return item;
}

// Top of the list = top of the map, as in a GIS table of contents.
function buildLayerList(map, entries) {
  const list = document.getElementById('layer-list');
  list.replaceChildren(...[...entries].reverse().map((entry) => layerRow(map, entry)));
}

function markOutOfZoom(map, entries) {
  const zoom = map.getZoom();
  for (const entry of entries) {
    const row = document.querySelector(`li[data-collection="${CSS.escape(entry.id)}"]`);
    if (row) row.classList.toggle('out-of-zoom', zoom < (entry.style.minzoom ?? 0));
  }
}

function positionText() {
  const { lngLat, zoom } = statusState;
  if (zoom === null) return '';
  const lon = lngLat ? lngLat.lng.toFixed(5) : '—';
  const lat = lngLat ? lngLat.lat.toFixed(5) : '—';
  return `lon ${lon} lat ${lat} z${zoom.toFixed(2)}`;
}

function renderStatus() {
  const status = document.getElementById('status');
  status.textContent = [positionText(), statusState.message].filter(Boolean).join('\n');
  status.classList.toggle('error', statusState.error);
}

function setMessage(message, error = false) {
  statusState.message = message;
  statusState.error = error;
  renderStatus();
}

// Cursor position and zoom; a zoom change without a cursor move keeps the last position.
function setPosition(lngLat, zoom) {
  if (lngLat) statusState.lngLat = lngLat;
  statusState.zoom = zoom;
  renderStatus();
}

// ---------------------------------------------------------------------------------------------
// Identify: click a feature, see its layer and every property

function formatValue(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function propertiesTable(properties) {
  const table = document.createElement('table');
  for (const [key, value] of Object.entries(properties || {})) {
    const row = table.insertRow();
    const th = document.createElement('th');
    th.textContent = key;
    const td = document.createElement('td');
    td.textContent = formatValue(value);
    row.append(th, td);
  }
  return table;
}

function paragraph(className, text) {
  const p = document.createElement('p');
  p.className = className;
  p.textContent = text;
  return p;
}

function identifyContent(entry, feature, properties, notes) {
  const box = document.createElement('div');
  box.className = 'identify';
  const heading = document.createElement('h3');
  heading.textContent = entry.title;
  box.append(heading, paragraph('fid', `${entry.id} · id ${formatValue(feature.id)}`));
  box.append(propertiesTable(properties));
  for (const note of notes.filter(Boolean)) box.append(paragraph('note', note));
  return box;
}

function hitFeatures(map, entries, point) {
  const t = CLICK_TOLERANCE_PX;
  const box = [[point.x - t, point.y - t], [point.x + t, point.y + t]];
  const layers = entries.flatMap((e) => e.layerIds)
    .filter((id) => map.getLayoutProperty(id, 'visibility') !== 'none');
  return map.queryRenderedFeatures(box, { layers });
}

// Other collections under the click (a polygon hit on its fill and its outline counts once).
function othersNote(hits, entriesById) {
  const others = new Set(hits.map((f) => f.source).filter((source) => source !== hits[0].source));
  const titles = [...others].map((source) => entriesById.get(source).title);
  return titles.length ? `Also here: ${titles.join(', ')}` : '';
}

// The tile carries the feature id; the full record (all properties) comes from OGC API Features.
async function identify(map, entries, event, popup) {
  const sequence = ++identifySequence;
  const hits = hitFeatures(map, entries, event.point);
  if (hits.length === 0) {
    popup.remove();
    return;
  }
  const entriesById = new Map(entries.map((e) => [e.id, e]));
  const feature = hits[0];
  const entry = entriesById.get(feature.source);
  const note = othersNote(hits, entriesById);
  popup.setLngLat(event.lngLat)
    .setDOMContent(identifyContent(entry, feature, feature.properties, [note]))
    .addTo(map);
  if (feature.id === undefined || feature.id === null) return;
  try {
    const full = await loadFeature(entry.id, feature.id);
    if (sequence !== identifySequence) return;
    popup.setDOMContent(identifyContent(entry, feature, full.properties, [note]));
  } catch (error) {
    if (sequence !== identifySequence) return;
    const warning = `Tile properties only (${error.message}).`;
    popup.setDOMContent(identifyContent(entry, feature, feature.properties, [note, warning]));
  }
}

// ---------------------------------------------------------------------------------------------
// Start-up

function createMap(entries) {
  const bounds = unionBounds(entries);
  const options = {
    container: 'map',
    style: buildStyle(entries),
    attributionControl: { compact: true },
    hash: true, // #zoom/lat/lon in the address bar: shareable views, and it wins over bounds
    ...(bounds ? { bounds, fitBoundsOptions: { padding: 30 } } : FALLBACK_VIEW),
  };
  const map = new maplibregl.Map(options);
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right');
  return map;
}

function wireEvents(map, entries) {
  const popup = new maplibregl.Popup({ maxWidth: '360px' });
  map.on('click', (event) => identify(map, entries, event, popup));
  map.on('mousemove', (event) => setPosition(event.lngLat, map.getZoom()));
  map.on('zoom', () => setPosition(null, map.getZoom()));
  map.on('zoomend', () => markOutOfZoom(map, entries));
  map.on('error', (event) => setMessage(`map error: ${event.error?.message || event.error}`, true));
  map.on('load', () => {
    setPosition(map.getCenter(), map.getZoom());
    markOutOfZoom(map, entries);
  });
}

function summary(entries, skipped) {
  const text = `${entries.length} layers`;
  return skipped.length ? `${text}; no tiles for: ${skipped.join(', ')}` : text;
}

async function main() {
  let loaded;
  try {
    loaded = await loadEntries();
  } catch (error) {
    setMessage(`could not load collections: ${error.message}`, true);
    return;
  }
  const { entries, skipped } = loaded;
  const map = createMap(entries);
  buildLayerList(map, entries);
  wireEvents(map, entries);
  setMessage(summary(entries, skipped), skipped.length > 0 && entries.length === 0);
  window.citytwinMap = map; // handy from the browser console
}

main();
