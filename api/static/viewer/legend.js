// The view switcher, the layer toggles and the legend. The views are the server's thematic maps
// (/maps, each a complete MapLibre style whose metadata carries the legend), plus "all layers",
// every published collection; the address keeps the view shown (#view=<id>&map=…).

import { allLayersView } from './collections.js';
import { closeCompare } from './imagery.js';
import { pipeNetworkOf } from './kinds.js';
import { withOverlays } from './overlays.js';
import { setMessage } from './panel.js';
import { $, state } from './state.js';
import {
  collectionBbox, el, getJSON, unionBounds, validBbox, valueLabel,
} from './util.js';

const ALL_LAYERS = {
  id: 'layers',
  title: '所有图层 All layers',
  description: 'Every published layer, styled by its geometry type',
};

// ---------------------------------------------------------------------------------------------
// The address: #view=<id>&map=<zoom>/<lat>/<lon> (MapLibre keeps the map= part up to date)

function hashParts() {
  return window.location.hash.slice(1).split('&').filter(Boolean);
}

export function hashView() {
  const part = hashParts().find((p) => p.startsWith('view='));
  return part ? decodeURIComponent(part.slice(5)) : null;
}

function setHashView(id) {
  const parts = hashParts().filter((p) => !p.startsWith('view='));
  parts.unshift(`view=${encodeURIComponent(id)}`);
  window.history.replaceState(window.history.state, '', `#${parts.join('&')}`);
}

// Links of the earlier viewer were #zoom/lat/lon.
export function upgradeOldHash() {
  const match = window.location.hash.match(/^#(\d+(?:\.\d+)?\/-?[\d.]+\/-?[\d.]+(?:\/[\d.-]+)*)$/);
  if (match) window.history.replaceState(window.history.state, '', `#map=${match[1]}`);
}

// ---------------------------------------------------------------------------------------------
// Views

export function viewInfo(id) {
  if (id === ALL_LAYERS.id) return ALL_LAYERS;
  return state.maps.find((m) => m.id === id);
}

export function defaultView() {
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

export async function loadView(id) {
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

export function indexLayers(view) {
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

export async function switchView(id) {
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

export function afterViewChange() {
  const { view } = state;
  setHashView(view.id);
  markViewButtons(view.id);
  renderLegend();
  $('view-title').textContent = view.title;
  $('view-description').textContent = view.description || '';
  const pipes = view.legend.some((e) => state.networks.has(pipeNetworkOf(e.collection)));
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

export function buildViewButtons() {
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

export function markOutOfZoom() {
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
