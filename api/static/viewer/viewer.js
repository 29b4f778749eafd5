// citytwin offline viewer: the one-map views (一张图).
//
// The views are the server's thematic maps (/maps, each a complete MapLibre style whose metadata
// carries the legend), plus "all layers", every published collection. Around the map: a view
// switcher, layer toggles with the legend, click-to-identify (attributes, code, unit grid),
// search by code, a polygon tool for "what is inside", pipe traces and burst isolation from a
// clicked pipe, a before/after slider for imagery, and live sensor alarms (live.js, sensor.js).
// Everything comes from this server: no base map, no glyphs, no sprites, so there are no symbol
// (text) layers at all.

/* global maplibregl */

import { allLayersView } from './collections.js';
import { Compare } from './compare.js';
import { PolygonDraw } from './draw.js';
import { LiveAlarms } from './live.js';
import { EMPTY, LAYER_IDS, SOURCES, withOverlays } from './overlays.js';
import {
  errorBox, isolationSummary, querySummary, traceSummary,
} from './results.js';
import { sensorDetails } from './sensor.js';
import {
  anchorOf, collectionBbox, el, formatValue, geometryBbox, getJSON, onBusyChange,
  pendingRequests, postJSON, unionBounds, validBbox, valueLabel,
} from './util.js';

const ALL_LAYERS = {
  id: 'layers',
  title: '所有图层 All layers',
  description: 'Every published layer, styled by its geometry type',
};
const FALLBACK_VIEW = { center: [116.5, 31.75], zoom: 12 }; // Lu'an, when no extent is known
const CLICK_TOLERANCE_PX = 4;
const POPUP_ROWS = 6; // attributes shown at once in an identify popup
const GEOJSON = 'application/geo+json';

// The code a feature is known by, in the order they are looked for.
const CODE_FIELDS = [
  ['sensor_id', '传感器 Sensor'],
  ['code', '编码 Code'],
  ['pipe_id', '管线编号 Pipe'],
  ['node_id', '节点编号 Node'],
  ['bldg_id', '建筑编号 Building'],
];

// Grid levels: the collection of each, and the widths of their codes (GB/T 30428.1).
const GRID_COLLECTIONS = [
  ['grid_district', [6]],
  ['grid_street', [9]],
  ['grid_community', [12]],
  ['grid_unit', [14, 15]],
];

const state = {
  map: null,
  maps: [], // GET /maps
  collections: new Map(), // id → OGC API collection
  networks: new Map(), // name → pipe network (kind pressure | gravity)
  view: null, // { id, title, description, style, legend, layers: Map(style layer id → meta) }
  loadingView: false,
  overlay: { highlight: EMPTY, analysis: EMPTY, live: EMPTY, draw: EMPTY },
  popup: null,
  identifySequence: 0,
  draw: null,
  compare: null,
  live: null, // the live alarm panel, when there are sensors
  scenes: [],
  result: null, // the last answer shown in the results panel: { kind, body }
  status: { lngLat: null, zoom: null, message: '', error: false },
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// The address: #view=<id>&map=<zoom>/<lat>/<lon> (MapLibre keeps the map= part up to date)

function hashParts() {
  return window.location.hash.slice(1).split('&').filter(Boolean);
}

function hashView() {
  const part = hashParts().find((p) => p.startsWith('view='));
  return part ? decodeURIComponent(part.slice(5)) : null;
}

function setHashView(id) {
  const parts = hashParts().filter((p) => !p.startsWith('view='));
  parts.unshift(`view=${encodeURIComponent(id)}`);
  window.history.replaceState(window.history.state, '', `#${parts.join('&')}`);
}

// Links of the earlier viewer were #zoom/lat/lon.
function upgradeOldHash() {
  const match = window.location.hash.match(/^#(\d+(?:\.\d+)?\/-?[\d.]+\/-?[\d.]+(?:\/[\d.-]+)*)$/);
  if (match) window.history.replaceState(window.history.state, '', `#map=${match[1]}`);
}

// ---------------------------------------------------------------------------------------------
// Views

function viewInfo(id) {
  if (id === ALL_LAYERS.id) return ALL_LAYERS;
  return state.maps.find((m) => m.id === id);
}

function defaultView() {
  if (state.maps.some((m) => m.id === 'city-management')) return 'city-management';
  return state.maps[0]?.id || ALL_LAYERS.id;
}

// Where a view is: the union of its layers' extents without outliers (the administrative
// boundary around a small city would otherwise make the city a speck), imagery included.
function viewBounds(doc, style) {
  const boxes = [];
  for (const layer of doc.layers || []) {
    const collection = layer.collection && state.collections.get(layer.collection);
    if (collection) boxes.push(collectionBbox(collection));
  }
  for (const source of Object.values(style.sources || {})) {
    if (source.type === 'raster' && validBbox(source.bounds)) boxes.push(source.bounds);
  }
  const bounds = unionBounds(boxes);
  if (bounds) return bounds;
  return validBbox(doc.bounds) ? [[doc.bounds[0], doc.bounds[1]], [doc.bounds[2], doc.bounds[3]]]
    : undefined;
}

async function loadView(id) {
  if (id === ALL_LAYERS.id) {
    const all = await allLayersView([...state.collections.values()]);
    return { ...ALL_LAYERS, ...all, doc: null };
  }
  const doc = viewInfo(id);
  const style = await getJSON(`maps/${encodeURIComponent(id)}/style.json`);
  const zooms = new Map((doc.layers || []).map((l) => [l.id, l]));
  // The style lists its legend bottom to top; the panel shows the top of the map first.
  const legend = [...(style.metadata?.['citytwin:legend'] || [])].reverse().map((entry) => {
    const layer = zooms.get(entry.layer) || {};
    return {
      ...entry,
      collection: layer.collection || null,
      minzoom: Math.max(layer.minzoom || 0, 0) || undefined,
      maxzoom: layer.maxzoom ?? undefined,
    };
  });
  const missing = style.metadata?.['citytwin:missing'] || [];
  return {
    id, title: doc.title, description: doc.description, style, legend, doc, missing,
    bounds: viewBounds(doc, style),
  };
}

function indexLayers(view) {
  view.layers = new Map();
  for (const layer of view.style.layers) {
    const meta = layer.metadata || {};
    if (!meta['citytwin:layer']) continue;
    view.layers.set(layer.id, {
      layer: meta['citytwin:layer'],
      collection: meta['citytwin:collection'] || null,
      cells: Boolean(meta['citytwin:cells']),
      type: layer.type,
      // fills drawn with no opacity (grid outlines) give way to anything else under a click
      clearFill: layer.type === 'fill' && layer.paint?.['fill-opacity'] === 0,
    });
  }
  return view;
}

async function switchView(id) {
  if (!viewInfo(id)) id = defaultView();
  if (state.view && state.view.id === id) return;
  state.loadingView = true;
  markViewButtons(id);
  let view;
  try {
    view = indexLayers(await loadView(id));
  } catch (error) {
    state.loadingView = false;
    markViewButtons(state.view?.id);
    setMessage(`could not load the view ${id}: ${error.message}`, true);
    return;
  }
  closeCompare();
  if (state.draw?.active) state.draw.cancel();
  state.popup?.remove();
  state.view = view;
  state.map.setStyle(withOverlays(view.style, state.overlay), { diff: false });
  state.loadingView = false;
  afterViewChange();
}

function afterViewChange() {
  const { view } = state;
  setHashView(view.id);
  markViewButtons(view.id);
  renderLegend();
  $('view-title').textContent = view.title;
  $('view-description').textContent = view.description || '';
  const pipes = view.legend.some((e) => e.collection?.endsWith('_pipes')
    && state.networks.has(e.collection.slice(0, -'_pipes'.length)));
  $('view-hint').hidden = !pipes;
  $('view-hint').textContent = '点击管线进行追踪或爆管关阀分析 · click a pipe to trace or isolate it';
  document.title = `${view.title} · citytwin 一张图`;
  const hasImagery = view.legend.some((e) => e.type === 'raster');
  $('compare-tool').hidden = !hasImagery;
  const notes = [];
  if (view.skipped?.length) notes.push(`no tiles for: ${view.skipped.join(', ')}`);
  if (view.missing?.length) notes.push(`not loaded yet: ${view.missing.join(', ')}`);
  setMessage(notes.join('; ') || `${view.legend.length} layers`, false);
  markOutOfZoom();
}

function viewLabel(title) {
  // "城市管理 City management" → 城市管理 over City management
  const match = String(title).match(/^(\S*[\u3400-\u9fff]\S*)\s+(.+)$/);
  return match ? [match[1], match[2]] : [title, ''];
}

function buildViewButtons() {
  const views = [...state.maps.filter((m) => !m.error), ALL_LAYERS];
  $('views').replaceChildren(...views.map((view) => {
    const [zh, en] = viewLabel(view.title);
    return el('button', {
      type: 'button',
      className: 'view',
      title: view.description || view.title,
      dataset: { view: view.id },
      onclick: () => switchView(view.id),
    }, el('span', { className: 'zh' }, zh), el('span', { className: 'en' }, en));
  }));
}

function markViewButtons(id) {
  for (const button of document.querySelectorAll('#views button')) {
    const on = button.dataset.view === id;
    button.classList.toggle('active', on);
    button.setAttribute('aria-pressed', String(on));
  }
}

// ---------------------------------------------------------------------------------------------
// Layer toggles and legend

const RASTER_SWATCH = {
  ndvi: 'linear-gradient(90deg, #a5642a, #f6e8a6, #7cc36b, #1a7f37)',
  ndwi: 'linear-gradient(90deg, #f4ead5, #8ec9e8, #1f5fa8)',
};

function swatch(type, color, { outline, dash, layer } = {}) {
  const node = el('span', { className: `swatch ${type}` });
  if (type === 'fill') {
    node.style.background = color || 'transparent';
    node.style.borderColor = outline || color;
    if (color === 'transparent' || !color) node.classList.add('hollow');
  } else if (type === 'line') {
    node.style.borderTopColor = color;
    if (dash) node.classList.add('dashed');
  } else if (type === 'raster') {
    node.style.background = RASTER_SWATCH[layer]
      || 'linear-gradient(135deg, #5b7f4a, #b9a77d 45%, #8a9aa5 70%, #3f6b86)';
  } else {
    node.style.background = color;
  }
  return node;
}

function styleLayersOf(layerId) {
  return state.view.style.layers
    .filter((l) => l.metadata?.['citytwin:layer'] === layerId)
    .map((l) => l.id);
}

function setLayerVisible(layerId, visible) {
  for (const id of styleLayersOf(layerId)) {
    if (state.map.getLayer(id)) {
      state.map.setLayoutProperty(id, 'visibility', visible ? 'visible' : 'none');
    }
  }
}

function zoomHint(entry) {
  const parts = [];
  if (entry.minzoom) parts.push(`z≥${entry.minzoom}`);
  if (entry.maxzoom !== undefined && entry.maxzoom < 24) parts.push(`z≤${entry.maxzoom}`);
  return parts.join(' ');
}

// The swatch of a fill as drawn: its opacity, and the outline colour of its outline layer.
function fillLook(entry, styleLayers) {
  const fill = styleLayers.find((l) => l.type === 'fill');
  const outline = styleLayers.find((l) => l.type === 'line');
  const opacity = fill?.paint?.['fill-opacity'];
  const lineColor = outline?.paint?.['line-color'];
  let color = entry.color;
  if (typeof opacity === 'number' && opacity === 0) color = 'transparent';
  else if (typeof opacity === 'number' && opacity < 1 && typeof color === 'string') {
    color = `color-mix(in srgb, ${color} ${Math.round(opacity * 100)}%, transparent)`;
  }
  return {
    color,
    outline: entry.outline || (typeof lineColor === 'string' ? lineColor : entry.color),
  };
}

function legendRow(entry) {
  const styleLayers = state.view.style.layers.filter(
    (l) => l.metadata?.['citytwin:layer'] === entry.layer,
  );
  const visible = styleLayers.some((l) => l.layout?.visibility !== 'none');
  const look = entry.type === 'fill' && !entry.items ? fillLook(entry, styleLayers)
    : { color: entry.items ? entry.items[0]?.color : entry.color, outline: entry.outline };
  const checkbox = el('input', {
    type: 'checkbox',
    checked: visible,
    onchange: () => setLayerVisible(entry.layer, checkbox.checked),
  });
  const label = el('label', { title: entry.collection || entry.layer },
    checkbox,
    swatch(entry.type, look.color, { outline: look.outline, dash: entry.dash, layer: entry.layer }),
    el('span', { className: 'name' }, entry.title),
    zoomHint(entry) ? el('span', { className: 'minzoom' }, zoomHint(entry)) : null);
  const row = el('li', {
    dataset: { layer: entry.layer, collection: entry.collection || entry.layer },
  }, label);
  if (entry.items?.length) {
    const type = entry.type === 'raster' ? 'fill' : entry.type;
    row.append(el('ul', { className: 'legend-items' }, entry.items.map((item) => el('li', {},
      swatch(type, item.color, { dash: entry.dash }),
      el('span', {}, valueLabel(item.label))))));
    if (entry.property) row.dataset.property = entry.property;
  }
  if (entry.note) row.append(el('p', { className: 'legend-note' }, entry.note));
  return row;
}

function renderLegend() {
  $('layer-list').replaceChildren(...state.view.legend.map(legendRow));
}

function markOutOfZoom() {
  if (!state.map || !state.view) return;
  const zoom = state.map.getZoom();
  for (const entry of state.view.legend) {
    const row = document.querySelector(`#layer-list li[data-layer="${CSS.escape(entry.layer)}"]`);
    if (!row) continue;
    const below = entry.minzoom !== undefined && zoom < entry.minzoom;
    const above = entry.maxzoom !== undefined && zoom > entry.maxzoom + 1;
    row.classList.toggle('out-of-zoom', below || above);
  }
}

// ---------------------------------------------------------------------------------------------
// Status line and busy marker

function positionText() {
  const { lngLat, zoom } = state.status;
  if (zoom === null) return '';
  const lon = lngLat ? lngLat.lng.toFixed(5) : '—';
  const lat = lngLat ? lngLat.lat.toFixed(5) : '—';
  return `lon ${lon}  lat ${lat}  z${zoom.toFixed(2)}`;
}

function renderStatus() {
  const status = $('status');
  status.textContent = [positionText(), state.status.message].filter(Boolean).join('\n');
  status.classList.toggle('error', state.status.error);
}

function setMessage(message, error = false) {
  state.status.message = message;
  state.status.error = error;
  renderStatus();
}

function setPosition(lngLat, zoom) {
  if (lngLat) state.status.lngLat = lngLat;
  state.status.zoom = zoom;
  renderStatus();
}

// ---------------------------------------------------------------------------------------------
// Overlays (highlight, analysis result, drawing)

function setOverlay(key, data) {
  state.overlay[key] = data || EMPTY;
  const source = state.map?.getSource(SOURCES[key]);
  if (source) source.setData(state.overlay[key]);
}

function highlight(feature) {
  setOverlay('highlight', feature
    ? { type: 'FeatureCollection', features: [{ ...feature, properties: {} }] } : EMPTY);
}

function fitTo(geojson, { maxZoom } = {}) {
  const box = geometryBbox(geojson);
  if (!box) return;
  const map = state.map;
  if (box[0] === box[2] && box[1] === box[3]) {
    map.easeTo({ center: [box[0], box[1]], zoom: Math.max(map.getZoom(), maxZoom ?? 17) });
    return;
  }
  map.fitBounds([[box[0], box[1]], [box[2], box[3]]], {
    padding: 60,
    maxZoom: maxZoom ?? Math.max(map.getZoom(), 15),
    duration: 600,
  });
}

// ---------------------------------------------------------------------------------------------
// Results panel

function showResults(node, kind = null, body = null) {
  $('results-section').hidden = false;
  $('results').replaceChildren(node);
  state.result = kind ? { kind, body } : null;
  $('results-section').scrollIntoView({ block: 'nearest' });
}

function loading(text) {
  return el('div', { className: 'loading' }, el('span', { className: 'spinner' }), text);
}

function clearResults() {
  $('results').replaceChildren();
  $('results-section').hidden = true;
  state.result = null;
  setOverlay('analysis', EMPTY);
  setOverlay('highlight', EMPTY);
  if (state.draw?.active) state.draw.cancel();
  setOverlay('draw', EMPTY);
}

// ---------------------------------------------------------------------------------------------
// Identify

function hitRank(meta, feature) {
  const type = feature.geometry?.type || '';
  if (type.includes('Point')) return 0;
  if (type.includes('Line')) return 1;
  return meta.clearFill ? 3 : 2;
}

function hits(point) {
  const { map, view } = state;
  const t = CLICK_TOLERANCE_PX;
  const box = [[point.x - t, point.y - t], [point.x + t, point.y + t]];
  const layers = [...view.layers.entries()]
    .filter(([id, meta]) => meta.type !== 'raster' && map.getLayer(id)
      && map.getLayoutProperty(id, 'visibility') !== 'none')
    .map(([id]) => id);
  if (layers.length === 0) return [];
  const found = map.queryRenderedFeatures(box, { layers });
  // Points before lines before filled polygons before outlined ones; the style order otherwise.
  return found
    .map((feature, order) => ({ feature, order, meta: view.layers.get(feature.layer.id) }))
    .sort((a, b) => hitRank(a.meta, a.feature) - hitRank(b.meta, b.feature) || a.order - b.order);
}

function legendTitle(layerId) {
  return state.view.legend.find((e) => e.layer === layerId)?.title || layerId;
}

function codeOf(properties) {
  for (const [field, label] of CODE_FIELDS) {
    if (properties && properties[field] !== undefined && properties[field] !== null) {
      return { field, label, value: properties[field] };
    }
  }
  return null;
}

function gridLines(properties, collection, located) {
  const rows = [];
  if (collection === 'grid_unit') {
    if (properties?.name) rows.push(['名称 Name', properties.name]);
  } else if (properties?.unit_grid) {
    const name = located?.unit?.code === properties.unit_grid ? located.unit.name : '';
    rows.push(['单元网格 Unit grid', `${properties.unit_grid} ${name}`.trim()]);
  } else if (located?.unit) {
    rows.push(['单元网格 Unit grid', `${located.unit.code} ${located.unit.name || ''}`.trim()]);
  }
  if (located?.community && collection !== 'grid_community') {
    rows.push(['社区 Community', `${located.community.code} ${located.community.name || ''}`.trim()]);
  }
  if (located?.street && !['grid_street', 'grid_community'].includes(collection)) {
    rows.push(['街道 Street', `${located.street.code} ${located.street.name || ''}`.trim()]);
  }
  return rows;
}

function pipeActions(collection, properties) {
  const name = collection?.endsWith('_pipes') ? collection.slice(0, -'_pipes'.length) : null;
  const network = name && state.networks.get(name);
  const pipeId = properties?.pipe_id;
  if (!network || !pipeId) return null;
  const button = (action, text, handler, extra = '') => el('button', {
    type: 'button',
    className: `action ${extra}`,
    dataset: { action },
    onclick: handler,
  }, text);
  const row = el('div', { className: 'pipe-actions' },
    el('span', { className: 'label' }, '管网分析 Network'),
    el('div', { className: 'buttons' },
      button('trace-upstream', '↑ 上游 Upstream', () => runTrace(name, pipeId, 'upstream')),
      button('trace-downstream', '↓ 下游 Downstream', () => runTrace(name, pipeId, 'downstream')),
      button('trace-connected', '⇄ 连通 Connected', () => runTrace(name, pipeId, 'connected')),
      network.kind === 'pressure'
        ? button('isolate', '✕ 爆管关阀 Isolate burst', () => runIsolation(name, pipeId), 'danger')
        : null));
  return row;
}

function identifyBox({ title, collection, fid, properties, located, others, note }) {
  const box = el('div', { className: 'identify', dataset: { collection: collection || '' } });
  const sensor = collection === 'sensors';
  box.append(el('h3', {}, (sensor && properties?.name) || title));
  box.append(el('p', { className: 'fid' }, `${collection || ''}${fid !== undefined ? ` · id ${fid}` : ''}`));
  const code = codeOf(properties);
  const keyRows = [];
  if (code) keyRows.push([code.label, String(code.value), 'code']);
  const grid = gridLines(properties, collection, located);
  // a sensor's popup has its chart to hold: the unit grid (named after its community) will do
  for (const [label, value] of sensor ? grid.slice(0, 1) : grid) {
    keyRows.push([label, value, 'grid']);
  }
  if (keyRows.length) {
    box.append(el('dl', { className: 'keys' }, keyRows.flatMap(([label, value, kind]) => [
      el('dt', {}, label), el('dd', { className: kind }, value),
    ])));
  }
  const actions = pipeActions(collection, properties);
  if (actions) box.append(actions);
  if (sensor) box.append(sensorDetails(properties, { onIsolate: runIsolation }) || '');
  // The first attributes in view, the rest one click away: the popup never needs a scroll bar.
  const rows = Object.entries(properties || {}).filter(([, value]) => !(value !== null
    && typeof value === 'object' && Object.keys(value).length === 0));
  const table = (part) => {
    const node = el('table', { className: 'attributes' });
    for (const [key, value] of part) {
      const shown = ['status', 'kind', 'valve_state'].includes(key) ? valueLabel(value)
        : formatValue(value);
      node.insertRow().append(el('th', {}, key), el('td', {}, shown));
    }
    return node;
  };
  // a sensor's state and value are in its panel above: its attributes wait behind the click
  const inView = sensor ? 0 : POPUP_ROWS;
  if (inView) box.append(table(rows.slice(0, inView)));
  if (rows.length > inView) {
    box.append(el('details', { className: 'more' },
      el('summary', {}, `全部属性 all ${rows.length} attributes`),
      table(rows.slice(inView))));
  }
  if (others?.length) box.append(el('p', { className: 'note' }, `Also here 此处还有: ${others.join(', ')}`));
  if (note) box.append(el('p', { className: 'note' }, note));
  return box;
}

function cellsBox(title, properties) {
  const rows = Object.entries(properties || {})
    .filter(([k]) => k.startsWith('n_'))
    .map(([k, v]) => [valueLabel(k.slice(2)), v]);
  const table = el('table', { className: 'attributes' });
  for (const [label, value] of rows) {
    const row = table.insertRow();
    row.append(el('th', {}, label), el('td', {}, formatValue(value)));
  }
  return el('div', { className: 'identify cells' },
    el('h3', {}, title),
    el('p', { className: 'fid' }, '网格汇总 counted per cell · zoom in for single features'),
    el('dl', { className: 'keys' }, el('dt', {}, '数量 Count'),
      el('dd', { className: 'code' }, formatValue(properties?.count))),
    table);
}

async function locate(lngLat) {
  try {
    const answer = await getJSON(`grid/locate?lon=${lngLat.lng}&lat=${lngLat.lat}`);
    return answer.inside ? answer : null;
  } catch {
    return null;
  }
}

function openPopup(lngLat, content) {
  state.popup.setLngLat(lngLat).setDOMContent(content).addTo(state.map);
}

async function identify(event) {
  const sequence = ++state.identifySequence;
  const found = hits(event.point);
  if (found.length === 0) {
    state.popup.remove();
    highlight(null);
    return;
  }
  const { feature, meta } = found[0];
  const title = legendTitle(meta.layer);
  // Other things under the click worth naming: points and lines (the grid cells are in the
  // popup's grid rows already), or other filled areas when an area was hit.
  const rank = hitRank(meta, feature);
  const others = [...new Set(found.slice(1)
    .filter((h) => h.meta.layer !== meta.layer && !h.meta.cells)
    .filter((h) => !(h.meta.collection === meta.collection && h.feature.id === feature.id))
    .filter((h) => (rank < 2 ? hitRank(h.meta, h.feature) < 2 : hitRank(h.meta, h.feature) === 2))
    .map((h) => legendTitle(h.meta.layer)))];
  if (meta.cells) {
    openPopup(event.lngLat, cellsBox(title, feature.properties));
    return;
  }
  const base = {
    title, collection: meta.collection, fid: feature.id, properties: feature.properties, others,
  };
  openPopup(event.lngLat, identifyBox({ ...base, note: 'loading the full record…' }));
  const wanted = feature.id !== undefined && feature.id !== null && meta.collection;
  const [full, located] = await Promise.all([
    wanted ? loadFeature(meta.collection, feature.id).catch((error) => ({ error }))
      : Promise.resolve(null),
    locate(event.lngLat),
  ]);
  if (sequence !== state.identifySequence) return;
  if (full && !full.error) {
    highlight(full);
    openPopup(event.lngLat, identifyBox({ ...base, properties: full.properties, located }));
  } else {
    const note = full?.error ? `tile attributes only (${full.error.message})` : null;
    openPopup(event.lngLat, identifyBox({ ...base, located, note }));
  }
}

function loadFeature(collection, fid) {
  return getJSON(`collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(fid)}`,
    GEOJSON);
}

// ---------------------------------------------------------------------------------------------
// Search by code

function searchTargets(text) {
  const targets = [];
  const digits = /^\d+$/.test(text);
  if (digits) {
    if (text.length === 16 || text.length === 17) targets.push(['components', 'code']);
    for (const [collection, widths] of GRID_COLLECTIONS) {
      if (widths.includes(text.length)) targets.push([collection, 'code']);
    }
    if (targets.length === 0) {
      targets.push(['components', 'code']);
      for (const [collection] of GRID_COLLECTIONS) targets.push([collection, 'code']);
    }
  } else {
    for (const name of state.networks.keys()) {
      targets.push([`${name}_pipes`, 'pipe_id'], [`${name}_nodes`, 'node_id']);
    }
    targets.push(['components', 'code']);
  }
  return targets.filter(([c]) => state.collections.has(c));
}

async function findExact(collection, field, text) {
  const query = `${encodeURIComponent(field)}=${encodeURIComponent(text)}&limit=5`;
  const body = await getJSON(`collections/${encodeURIComponent(collection)}/items?${query}`, GEOJSON);
  return (body.features || []).map((f) => ({ collection, field, feature: f }));
}

async function findPrefix(collection, field, text) {
  const cql = `${field} LIKE '${text.replace(/'/g, "''")}%'`;
  const query = `filter=${encodeURIComponent(cql)}&filter-lang=cql2-text&limit=8`;
  const body = await getJSON(`collections/${encodeURIComponent(collection)}/items?${query}`, GEOJSON);
  return (body.features || []).map((f) => ({ collection, field, feature: f }));
}

async function gather(targets, finder, text) {
  const settled = await Promise.allSettled(targets.map(([c, f]) => finder(c, f, text)));
  return settled.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
}

// A collection's name as the current view's legend has it, else as the catalog has it.
function collectionTitle(id) {
  const entry = state.view?.legend.find((e) => e.collection === id);
  return entry?.title || state.collections.get(id)?.title || id;
}

function goTo(hit) {
  const { feature, collection } = hit;
  highlight(feature);
  fitTo(feature, { maxZoom: feature.geometry?.type === 'Point' ? 18 : 17 });
  const anchor = anchorOf(feature.geometry);
  if (!anchor) return;
  const lngLat = { lng: anchor[0], lat: anchor[1] };
  const base = {
    title: collectionTitle(collection), collection, fid: feature.id, properties: feature.properties,
  };
  openPopup(anchor, identifyBox(base));
  locate(lngLat).then((located) => {
    if (state.popup.isOpen() && located) openPopup(anchor, identifyBox({ ...base, located }));
  });
}

function resultButton(hit) {
  const code = hit.feature.properties?.[hit.field];
  const name = hit.feature.properties?.name || hit.feature.properties?.class_name || '';
  return el('li', {}, el('button', { type: 'button', className: 'hit', onclick: () => goTo(hit) },
    el('span', { className: 'code' }, code),
    el('span', { className: 'what' }, `${collectionTitle(hit.collection)} ${name}`.trim())));
}

async function search(text) {
  const box = $('search-results');
  text = text.trim();
  if (!text) {
    box.replaceChildren();
    return;
  }
  if (!/^[\w.-]{1,40}$/.test(text)) {
    box.replaceChildren(el('p', { className: 'error' }, '编码只含字母和数字 a code has letters and digits only'));
    return;
  }
  box.replaceChildren(loading('查找中 searching…'));
  const targets = searchTargets(text);
  let found = await gather(targets, findExact, text);
  let exact = true;
  if (found.length === 0 && text.length >= 4) {
    found = await gather(targets, findPrefix, text);
    exact = false;
  }
  if (found.length === 0) {
    box.replaceChildren(el('p', { className: 'empty' }, `未找到 nothing has the code ${text}`));
    return;
  }
  const heading = exact ? '' : `codes starting ${text}`;
  box.replaceChildren(
    heading ? el('p', { className: 'note' }, heading) : '',
    el('ul', { className: 'hits' }, found.slice(0, 12).map(resultButton)),
  );
  if (found.length === 1 || exact) goTo(found[0]);
}

// ---------------------------------------------------------------------------------------------
// Pipe traces and burst isolation

async function runTrace(network, pipeId, direction) {
  state.popup.remove();
  showResults(loading(`追踪 tracing ${direction} from ${pipeId}…`));
  let body;
  try {
    body = await postJSON('pipelines/trace', { network, start: { segment: pipeId }, direction });
  } catch (error) {
    showResults(errorBox(error, '追踪 Trace'));
    return;
  }
  setOverlay('analysis', { type: 'FeatureCollection', features: body.features || [] });
  highlight(null);
  showResults(traceSummary(body), 'trace', body);
  fitTo({ type: 'FeatureCollection', features: body.features || [] });
}

async function runIsolation(network, pipeId) {
  state.popup.remove();
  showResults(loading(`爆管分析 isolating ${pipeId}…`));
  let body;
  try {
    body = await postJSON('pipelines/isolate', { network, start: { segment: pipeId } });
  } catch (error) {
    showResults(errorBox(error, '爆管关阀 Isolation'));
    return;
  }
  const features = [...(body.features || [])];
  if (body.outage_area) {
    features.unshift({ type: 'Feature', geometry: body.outage_area, properties: { role: 'outage' } });
  }
  setOverlay('analysis', { type: 'FeatureCollection', features });
  highlight(null);
  showResults(isolationSummary(body, (valve) => {
    state.map.easeTo({ center: [valve.lon, valve.lat], zoom: Math.max(state.map.getZoom(), 17) });
  }), 'isolation', body);
  fitTo({ type: 'FeatureCollection', features });
}

// ---------------------------------------------------------------------------------------------
// "What is inside": draw a polygon, ask the server

function setDrawButton(active) {
  const button = $('draw-tool');
  button.classList.toggle('active', active);
  button.setAttribute('aria-pressed', String(active));
  const hint = $('tool-hint');
  hint.hidden = !active;
  hint.textContent = '单击添加顶点, 双击或点击起点结束, Esc 取消 · click to add vertices; '
    + 'double-click or click the first vertex to close; Esc cancels';
}

async function runQuery(polygon) {
  showResults(loading('区域查询 querying the area…'));
  try {
    const body = await postJSON('query/within', { geometry: polygon });
    showResults(querySummary(body), 'query', body);
  } catch (error) {
    showResults(errorBox(error, '区域查询 Query'), 'query-error', { code: error.code });
  }
}

function toggleDraw() {
  if (state.draw.active) {
    state.draw.cancel();
    return;
  }
  closeCompare();
  state.popup.remove();
  state.draw.start();
}

// ---------------------------------------------------------------------------------------------
// Imagery before/after

async function loadScenes() {
  if (state.scenes.length) return state.scenes;
  const raster = Object.values(state.view.style.sources).find((s) => s.type === 'raster');
  const named = raster?.attribution?.match(/^imagery: (.+)$/)?.[1];
  const { collections } = await getJSON('raster/collections');
  const cid = named || collections?.[0]?.id;
  if (!cid) return [];
  const items = await getJSON(`raster/collections/${encodeURIComponent(cid)}/items`, GEOJSON);
  state.scenes = (items.features || [])
    .map((item) => ({ id: item.id, datetime: item.properties?.datetime, bbox: item.bbox }))
    .sort((a, b) => String(a.datetime).localeCompare(String(b.datetime)));
  return state.scenes;
}

function sceneOption(scene) {
  const date = scene.datetime ? scene.datetime.slice(0, 10) : '';
  return el('option', { value: scene.id }, date ? `${date} · ${scene.id}` : scene.id);
}

// Outlines of the view's polygon layers (communities, detected changes) on both sides.
function compareOverlay() {
  const { view } = state;
  const source = view.style.sources[view.id];
  if (!source || source.type !== 'vector') return null;
  const layers = view.style.layers
    .filter((l) => l.type === 'fill' && l.source === view.id
      && l.layout?.visibility !== 'none' && state.map.getLayoutProperty(l.id, 'visibility') !== 'none')
    .map((l) => ({
      id: l.id, sourceLayer: l['source-layer'], color: l.paint['fill-color'], width: 1.4,
    }));
  return layers.length ? { source, layers } : null;
}

function showCompare() {
  const byId = new Map(state.scenes.map((s) => [s.id, s]));
  const before = byId.get($('compare-before-date').value);
  const after = byId.get($('compare-after-date').value);
  if (!before || !after) return;
  state.compare.show({ before, after, preset: $('compare-preset').value, overlay: compareOverlay() });
}

async function toggleCompare() {
  if (state.compare.open) {
    closeCompare();
    return;
  }
  if (state.draw.active) state.draw.cancel();
  state.popup.remove();
  let scenes;
  try {
    scenes = await loadScenes();
  } catch (error) {
    setMessage(`imagery: ${error.message}`, true);
    return;
  }
  if (scenes.length < 2) {
    setMessage('影像对比需要两期影像 compare needs two image dates', true);
    return;
  }
  for (const select of [$('compare-before-date'), $('compare-after-date')]) {
    select.replaceChildren(...scenes.map(sceneOption));
  }
  $('compare-before-date').value = scenes[0].id;
  $('compare-after-date').value = scenes[scenes.length - 1].id;
  $('compare-panel').hidden = false;
  $('compare-tool').classList.add('active');
  $('compare-tool').setAttribute('aria-pressed', 'true');
  showCompare();
}

function closeCompare() {
  if (!state.compare?.open) return;
  state.compare.hide();
  $('compare-panel').hidden = true;
  $('compare-tool').classList.remove('active');
  $('compare-tool').setAttribute('aria-pressed', 'false');
}

// ---------------------------------------------------------------------------------------------
// Start-up

function ready() {
  const { map } = state;
  if (!map || !state.view || state.loadingView) return false;
  if (pendingRequests() > 0) return false;
  if (!(map.loaded() && map.areTilesLoaded() && !map.isMoving())) return false;
  return state.compare.ready();
}

function exposeForTests() {
  window.citytwinMap = state.map; // handy from the browser console
  window.citytwinViewer = {
    state,
    ready,
    switchView,
    search,
    get view() {
      return state.view?.id;
    },
    // Features held by an overlay (highlight, analysis, draw) and drawn on screen.
    count: (key) => state.overlay[key]?.features.length ?? 0,
    rendered: (prefix) => state.map.queryRenderedFeatures({
      layers: LAYER_IDS.filter((id) => id.startsWith(prefix) && state.map.getLayer(id)),
    }).length,
    compareMaps: () => state.compare.maps,
    live: () => state.live?.snapshot() ?? null,
  };
}

function wireMap(map) {
  state.popup = new maplibregl.Popup({ maxWidth: '380px', className: 'ct-popup' });
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-right');
  map.on('click', (event) => {
    if (state.draw.click(event)) return;
    identify(event);
  });
  map.on('dblclick', (event) => state.draw.dblclick(event));
  map.on('mousemove', (event) => {
    state.draw.move(event);
    setPosition(event.lngLat, map.getZoom());
  });
  map.on('zoom', () => setPosition(null, map.getZoom()));
  map.on('zoomend', markOutOfZoom);
  map.on('load', () => {
    setPosition(map.getCenter(), map.getZoom());
    markOutOfZoom();
  });
  map.on('error', (event) => {
    if (event.tile || event.sourceId) return; // a missing tile is not worth a message
    setMessage(`map error: ${event.error?.message || event.error}`, true);
  });
}

function createMap(view) {
  const options = {
    container: 'map',
    style: withOverlays(view.style, state.overlay),
    attributionControl: { compact: true },
    hash: 'map', // #view=…&map=zoom/lat/lon: shareable views; a position there wins over bounds
    ...(view.bounds ? { bounds: view.bounds, fitBoundsOptions: { padding: 30 } } : FALLBACK_VIEW),
  };
  const map = new maplibregl.Map(options);
  state.map = map;
  wireMap(map);
  return map;
}

function wirePanel() {
  $('search').addEventListener('submit', (event) => {
    event.preventDefault();
    search($('search-input').value);
  });
  $('draw-tool').addEventListener('click', toggleDraw);
  $('compare-tool').addEventListener('click', toggleCompare);
  $('clear-results').addEventListener('click', clearResults);
  for (const id of ['compare-before-date', 'compare-after-date', 'compare-preset']) {
    $(id).addEventListener('change', showCompare);
  }
  onBusyChange((n) => {
    $('busy').hidden = n === 0;
  });
  window.addEventListener('hashchange', () => {
    const wanted = hashView();
    if (wanted && wanted !== state.view?.id) switchView(wanted);
  });
}

async function loadCatalog() {
  const [maps, collections, networks] = await Promise.allSettled([
    getJSON('maps'),
    getJSON('collections'),
    getJSON('pipelines'),
  ]);
  if (collections.status === 'rejected') throw collections.reason;
  state.maps = maps.status === 'fulfilled' ? maps.value.maps || [] : [];
  state.collections = new Map((collections.value.collections || []).map((c) => [c.id, c]));
  const nets = networks.status === 'fulfilled' ? networks.value.networks || [] : [];
  state.networks = new Map(nets.map((n) => [n.name, n]));
}

async function main() {
  upgradeOldHash();
  wirePanel();
  try {
    await loadCatalog();
  } catch (error) {
    setMessage(`could not load the catalog: ${error.message}`, true);
    return;
  }
  buildViewButtons();
  const wanted = hashView();
  const id = wanted && viewInfo(wanted) ? wanted : defaultView();
  state.loadingView = true;
  let view;
  try {
    view = indexLayers(await loadView(id));
  } catch (error) {
    state.loadingView = false;
    setMessage(`could not load the view ${id}: ${error.message}`, true);
    return;
  }
  state.view = view;
  const map = createMap(view);
  state.draw = new PolygonDraw(map, {
    setData: (data) => setOverlay('draw', data),
    onFinish: runQuery,
    onChange: (tool) => setDrawButton(tool.active),
  });
  state.compare = new Compare({
    root: $('compare'),
    before: $('compare-before'),
    after: $('compare-after'),
    divider: $('compare-divider'),
    labelBefore: $('compare-label-before'),
    labelAfter: $('compare-label-after'),
  }, map);
  state.loadingView = false;
  afterViewChange();
  startLive(map);
  exposeForTests();
}

function startLive(map) {
  if (!state.collections.has('sensors')) return;
  state.live = new LiveAlarms({
    root: $('live'),
    list: $('live-list'),
    count: $('live-count'),
    status: $('live-status'),
    map,
    setOverlay: (data) => setOverlay('live', data),
    openSensor: (feature) => goTo({ collection: 'sensors', field: 'sensor_id', feature }),
    isolate: runIsolation,
    reloadTiles: reloadSensorTiles,
  });
  state.live.start();
}

// Sensor states changed: the tiles of the view's sensor layers are fetched again (the server
// dropped those whose sensors changed; the others answer 304 Not Modified).
function reloadSensorTiles() {
  const { view, map } = state;
  if (!view || !map || state.loadingView) return;
  const ids = new Set(view.style.layers
    .filter((l) => l.metadata?.['citytwin:collection'] === 'sensors' && l.source)
    .map((l) => l.source));
  for (const id of ids) {
    const source = map.getSource(id);
    const tiles = source?.tiles || source?.serialize?.().tiles;
    if (source?.setTiles && tiles) source.setTiles(tiles);
  }
}

main();
