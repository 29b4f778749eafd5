// The viewer's one state object, shared by its modules (viewer.js fills it at start-up), and the
// DOM look-up they all use.

import { EMPTY } from './overlays.js';

export const state = {
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

export const $ = (id) => document.getElementById(id);
