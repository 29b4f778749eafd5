// Click to identify: the feature under the click in a popup, with its code, its unit grid,
// community and street (GET /grid/locate), its full record and, on a pipe, the network analyses.

import { gridLevelOf, isSensors } from './kinds.js';
import { pipeActions, runIsolation } from './network.js';
import { highlight } from './panel.js';
import { sensorDetails } from './sensor.js';
import { state } from './state.js';
import {
  el, formatValue, getJSON, GEOJSON, valueLabel,
} from './util.js';

const CLICK_TOLERANCE_PX = 4;
const POPUP_ROWS = 6; // attributes shown at once in an identify popup

// The code a feature is known by, in the order they are looked for.
const CODE_FIELDS = [
  ['sensor_id', '传感器 Sensor'],
  ['code', '编码 Code'],
  ['pipe_id', '管线编号 Pipe'],
  ['node_id', '节点编号 Node'],
  ['bldg_id', '建筑编号 Building'],
];

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
  const level = gridLevelOf(collection);
  if (level === 'unit') {
    if (properties?.name) rows.push(['名称 Name', properties.name]);
  } else if (properties?.unit_grid) {
    const name = located?.unit?.code === properties.unit_grid ? located.unit.name : '';
    rows.push(['单元网格 Unit grid', `${properties.unit_grid} ${name}`.trim()]);
  } else if (located?.unit) {
    rows.push(['单元网格 Unit grid', `${located.unit.code} ${located.unit.name || ''}`.trim()]);
  }
  if (located?.community && level !== 'community') {
    rows.push(['社区 Community', `${located.community.code} ${located.community.name || ''}`.trim()]);
  }
  if (located?.street && !['street', 'community'].includes(level)) {
    rows.push(['街道 Street', `${located.street.code} ${located.street.name || ''}`.trim()]);
  }
  return rows;
}

export function identifyBox({ title, collection, fid, properties, located, others, note }) {
  const box = el('div', { className: 'identify', dataset: { collection: collection || '' } });
  const sensor = isSensors(collection);
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

export async function locate(lngLat) {
  try {
    const answer = await getJSON(`grid/locate?lon=${lngLat.lng}&lat=${lngLat.lat}`);
    return answer.inside ? answer : null;
  } catch {
    return null;
  }
}

export function openPopup(lngLat, content) {
  state.popup.setLngLat(lngLat).setDOMContent(content).addTo(state.map);
}

export async function identify(event) {
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
