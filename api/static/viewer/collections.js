// The "all layers" view (所有图层): every published collection with vector tiles, one MVT source
// each (from its TileJSON), styled by geometry type, with known sample-city collections in
// hand-picked colours. User-imported layers that no thematic map names show up here.

import { collectionBbox, getJSON, unionBounds, validBbox } from './util.js';

const DENSE_MINZOOM = 15; // components and pipe nodes: thousands of points per tile below this
const WIDTH_FIELD = 'width_m'; // line layers carrying it (streets) are drawn at their true width
const EARTH_CIRCUMFERENCE_M = 40075016.686;
const TILE_SIZE_PX = 512; // MapLibre's world is 512 px wide at zoom 0
export const BACKGROUND = '#f2f1ec';

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

// ---------------------------------------------------------------------------------------------
// Loading

function loadTileJSON(collection) {
  const id = encodeURIComponent(collection.id);
  return getJSON(`collections/${id}/tiles/WebMercatorQuad/tilejson.json`);
}

// Pair each collection with its TileJSON; collections without vector tiles are left out.
async function loadEntries(collections) {
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

function sourceFor(entry) {
  const { tiles, minzoom, maxzoom, bounds, attribution } = entry.tilejson;
  const source = { type: 'vector', tiles, minzoom: minzoom ?? 0, maxzoom: maxzoom ?? 22 };
  if (validBbox(bounds)) source.bounds = bounds;
  if (attribution) source.attribution = attribution;
  return source;
}

function layersFor(entry) {
  const metadata = { 'citytwin:layer': entry.id, 'citytwin:collection': entry.id };
  return layerPlan(entry.kind).map(([suffix, build, filterKind]) => {
    const layer = {
      ...build(entry, suffix),
      id: `${entry.id}::${suffix}`,
      source: entry.id,
      'source-layer': entry.sourceLayer,
      metadata,
    };
    if (filterKind) layer.filter = geometryFilter(filterKind);
    if (entry.style.minzoom !== undefined) layer.minzoom = entry.style.minzoom;
    return layer;
  });
}

// The legend entry of a collection, in the shape the map styles carry in their metadata.
function legendFor(entry) {
  const { color, fill, fillOpacity, dash, minzoom } = entry.style;
  const type = { polygon: 'fill', line: 'line', point: 'circle' }[entry.kind] || 'fill';
  const out = { layer: entry.id, title: entry.title, type, color, collection: entry.id };
  if (type === 'fill') {
    out.color = fillOpacity > 0 ? fill : 'transparent';
    out.outline = color;
  }
  if (dash) out.dash = true;
  if (minzoom !== undefined) out.minzoom = minzoom;
  return out;
}

// A style with no glyphs and no sprite: nothing for MapLibre to fetch but our own tiles. Top of
// the legend = top of the map, as in a GIS table of contents.
export async function allLayersView(collections) {
  const { entries, skipped } = await loadEntries(collections);
  const sources = {};
  const layers = [{ id: 'background', type: 'background', paint: { 'background-color': BACKGROUND } }];
  for (const entry of entries) {
    sources[entry.id] = sourceFor(entry);
    layers.push(...layersFor(entry));
  }
  return {
    style: { version: 8, name: 'citytwin', sources, layers },
    legend: [...entries].reverse().map(legendFor),
    bounds: unionBounds(entries.map((e) => e.bbox)),
    skipped,
  };
}
