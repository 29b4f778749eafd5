// The panel and the map's feedback: the status line, the overlays (highlight, analysis result,
// drawing) and the results panel.

import { EMPTY, SOURCES } from './overlays.js';
import { $, state } from './state.js';
import { el, geometryBbox } from './util.js';

// ---------------------------------------------------------------------------------------------
// Status line

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

export function setMessage(message, error = false) {
  state.status.message = message;
  state.status.error = error;
  renderStatus();
}

export function setPosition(lngLat, zoom) {
  if (lngLat) state.status.lngLat = lngLat;
  state.status.zoom = zoom;
  renderStatus();
}

// ---------------------------------------------------------------------------------------------
// Overlays (highlight, analysis result, drawing)

export function setOverlay(key, data) {
  state.overlay[key] = data || EMPTY;
  const source = state.map?.getSource(SOURCES[key]);
  if (source) source.setData(state.overlay[key]);
}

export function highlight(feature) {
  setOverlay('highlight', feature
    ? { type: 'FeatureCollection', features: [{ ...feature, properties: {} }] } : EMPTY);
}

export function fitTo(geojson, { maxZoom } = {}) {
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

export function showResults(node, kind = null, body = null) {
  $('results-section').hidden = false;
  $('results').replaceChildren(node);
  state.result = kind ? { kind, body } : null;
  $('results-section').scrollIntoView({ block: 'nearest' });
}

export function loading(text) {
  return el('div', { className: 'loading' }, el('span', { className: 'spinner' }), text);
}

export function clearResults() {
  $('results').replaceChildren();
  $('results-section').hidden = true;
  state.result = null;
  setOverlay('analysis', EMPTY);
  setOverlay('highlight', EMPTY);
  if (state.draw?.active) state.draw.cancel();
  setOverlay('draw', EMPTY);
}
