// Search by code: component codes, grid codes and pipe or node ids, exact first, then as a prefix
// (CQL2 LIKE); a hit is highlighted, zoomed to and identified.

import { identifyBox, locate, openPopup } from './identify.js';
import {
  COMPONENTS, gridCollections, networkCodeFields,
} from './kinds.js';
import { fitTo, highlight, loading } from './panel.js';
import { $, state } from './state.js';
import {
  anchorOf, el, getJSON, GEOJSON,
} from './util.js';

// Where a code may be: components (16 or 17 digits), a grid level by its code's width, else the
// pipes and nodes of every network.
function searchTargets(text) {
  const targets = [];
  const digits = /^\d+$/.test(text);
  if (digits) {
    if (text.length === 16 || text.length === 17) targets.push([COMPONENTS, 'code']);
    for (const [collection, widths] of gridCollections()) {
      if (widths.includes(text.length)) targets.push([collection, 'code']);
    }
    if (targets.length === 0) {
      targets.push([COMPONENTS, 'code']);
      for (const [collection] of gridCollections()) targets.push([collection, 'code']);
    }
  } else {
    for (const name of state.networks.keys()) targets.push(...networkCodeFields(name));
    targets.push([COMPONENTS, 'code']);
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

export function goTo(hit) {
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

export async function search(text) {
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
