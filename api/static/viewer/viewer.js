// citytwin offline viewer: the one-map views (一张图).
//
// This module composes the viewer: it loads the catalog, sets up the map and wires the panel.
// Each concern is a module of its own: the view switcher and legend (legend.js), click-to-identify
// (identify.js), search by code (search.js), pipe traces and burst isolation (network.js), the
// polygon tool for "what is inside" (area.js), the before/after slider for imagery (imagery.js),
// the status line and results panel (panel.js) and live sensor alarms (live.js, sensor.js); they
// share one state object (state.js). Collection kinds are told from names in kinds.js only.
// Everything comes from this server: no base map, no glyphs, no sprites, so there are no symbol
// (text) layers at all.

/* global maplibregl */

import { runQuery, setDrawButton, toggleDraw } from './area.js';
import { Compare } from './compare.js';
import { PolygonDraw } from './draw.js';
import { identify } from './identify.js';
import { showCompare, toggleCompare } from './imagery.js';
import { isSensors, SENSORS } from './kinds.js';
import {
  afterViewChange, buildViewButtons, defaultView, hashView, indexLayers, loadView, markOutOfZoom,
  switchView, upgradeOldHash, viewInfo,
} from './legend.js';
import { LiveAlarms } from './live.js';
import { runIsolation } from './network.js';
import { LAYER_IDS, withOverlays } from './overlays.js';
import {
  clearResults, setMessage, setOverlay, setPosition,
} from './panel.js';
import { goTo, search } from './search.js';
import { $, state } from './state.js';
import { getJSON, onBusyChange, pendingRequests } from './util.js';

const FALLBACK_VIEW = { center: [116.5, 31.75], zoom: 12 }; // Lu'an, when no extent is known

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
  if (!state.collections.has(SENSORS)) return;
  state.live = new LiveAlarms({
    root: $('live'),
    list: $('live-list'),
    count: $('live-count'),
    status: $('live-status'),
    map,
    setOverlay: (data) => setOverlay('live', data),
    openSensor: (feature) => goTo({ collection: SENSORS, field: 'sensor_id', feature }),
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
    .filter((l) => isSensors(l.metadata?.['citytwin:collection']) && l.source)
    .map((l) => l.source));
  for (const id of ids) {
    const source = map.getSource(id);
    const tiles = source?.tiles || source?.serialize?.().tiles;
    if (source?.setTiles && tiles) source.setTiles(tiles);
  }
}

main();
