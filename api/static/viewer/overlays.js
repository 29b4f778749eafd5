// What the viewer draws on top of any view: the search/identify highlight, the result of a trace
// or an isolation, the live alarms, and the polygon being drawn. They are GeoJSON sources kept
// across view switches (each new style gets them again with their current data).

export const EMPTY = { type: 'FeatureCollection', features: [] };

export const SOURCES = {
  highlight: 'ct-highlight',
  analysis: 'ct-analysis',
  draw: 'ct-draw',
  live: 'ct-live',
};

const HIGHLIGHT = '#ffb000';
const ROLE_COLORS = [
  'match', ['get', 'role'],
  'burst', '#b00020',
  'isolated', '#e53935',
  'cut_off', '#f39c12',
  'traced', '#ff6d00',
  '#ff6d00',
];

const isPolygon = ['match', ['geometry-type'], ['Polygon', 'MultiPolygon'], true, false];
const isLine = ['match', ['geometry-type'], ['LineString', 'MultiLineString'], true, false];
const isPoint = ['match', ['geometry-type'], ['Point', 'MultiPoint'], true, false];
const grow = (base) => ['interpolate', ['linear'], ['zoom'], 12, base * 0.6, 16, base, 19, base * 1.8];

export const LAYERS = [
  // The outage area under the isolated pipes.
  {
    id: 'ct-analysis-area', type: 'fill', source: SOURCES.analysis, filter: isPolygon,
    paint: { 'fill-color': '#e53935', 'fill-opacity': 0.14 },
  },
  {
    id: 'ct-analysis-area-edge', type: 'line', source: SOURCES.analysis, filter: isPolygon,
    paint: { 'line-color': '#e53935', 'line-width': 1.2, 'line-dasharray': [2, 2] },
  },
  // Pipes of the result: a white casing, then the role colour.
  {
    id: 'ct-analysis-casing', type: 'line', source: SOURCES.analysis, filter: isLine,
    layout: { 'line-join': 'round', 'line-cap': 'round' },
    paint: { 'line-color': '#ffffff', 'line-width': grow(8), 'line-opacity': 0.9 },
  },
  {
    id: 'ct-analysis-line', type: 'line', source: SOURCES.analysis, filter: isLine,
    layout: { 'line-join': 'round', 'line-cap': 'round' },
    paint: { 'line-color': ROLE_COLORS, 'line-width': grow(4.5) },
  },
  // Nodes reached by a trace (small), valves to close and closed valves (large).
  {
    id: 'ct-analysis-node', type: 'circle', source: SOURCES.analysis,
    filter: ['all', isPoint, ['==', ['get', 'role'], 'traced']],
    paint: {
      'circle-color': '#ff6d00', 'circle-radius': grow(2.5),
      'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1,
    },
  },
  {
    id: 'ct-analysis-valve', type: 'circle', source: SOURCES.analysis,
    filter: ['all', isPoint, ['!=', ['get', 'role'], 'traced']],
    paint: {
      'circle-color': ['match', ['get', 'role'], 'valve_to_close', '#d7263d', '#263238'],
      'circle-radius': grow(7),
      'circle-stroke-color': '#ffffff',
      'circle-stroke-width': 2.5,
    },
  },
  // Live alarms: a ring round each sensor in alarm, and a widening pulse (animated by live.js)
  // round those that just opened.
  {
    id: 'ct-live-ring', type: 'circle', source: SOURCES.live,
    filter: ['==', ['get', 'state'], 'open'],
    paint: {
      'circle-color': 'rgba(224,38,47,0.14)', 'circle-radius': grow(12),
      'circle-stroke-color': '#e0262f', 'circle-stroke-width': 2,
    },
  },
  {
    id: 'ct-live-pulse', type: 'circle', source: SOURCES.live,
    filter: ['==', ['get', 'fresh'], true],
    paint: {
      'circle-color': 'rgba(224,38,47,0)', 'circle-radius': 12,
      'circle-stroke-color': '#e0262f', 'circle-stroke-width': 3, 'circle-stroke-opacity': 0.9,
    },
  },
  // Search and identify highlight.
  {
    id: 'ct-highlight-fill', type: 'fill', source: SOURCES.highlight, filter: isPolygon,
    paint: { 'fill-color': HIGHLIGHT, 'fill-opacity': 0.18 },
  },
  {
    id: 'ct-highlight-line', type: 'line', source: SOURCES.highlight, filter: ['!', isPoint],
    layout: { 'line-join': 'round', 'line-cap': 'round' },
    paint: { 'line-color': HIGHLIGHT, 'line-width': 4, 'line-opacity': 0.95 },
  },
  {
    id: 'ct-highlight-point', type: 'circle', source: SOURCES.highlight, filter: isPoint,
    paint: {
      'circle-color': 'rgba(255,176,0,0.25)', 'circle-radius': 12,
      'circle-stroke-color': HIGHLIGHT, 'circle-stroke-width': 3,
    },
  },
  // The polygon being drawn (or the last one queried).
  {
    id: 'ct-draw-fill', type: 'fill', source: SOURCES.draw, filter: isPolygon,
    paint: { 'fill-color': '#1e88e5', 'fill-opacity': 0.14 },
  },
  {
    id: 'ct-draw-line', type: 'line', source: SOURCES.draw, filter: ['!', isPoint],
    layout: { 'line-join': 'round', 'line-cap': 'round' },
    paint: { 'line-color': '#1e88e5', 'line-width': 2.2, 'line-dasharray': [3, 1.5] },
  },
  {
    id: 'ct-draw-vertex', type: 'circle', source: SOURCES.draw, filter: isPoint,
    paint: {
      'circle-color': ['case', ['get', 'first'], '#1e88e5', '#ffffff'],
      'circle-radius': ['case', ['get', 'first'], 6, 4.5],
      'circle-stroke-color': '#1e88e5',
      'circle-stroke-width': 2,
    },
  },
];

export const LAYER_IDS = LAYERS.map((l) => l.id);

// The style with the overlays on top, holding their current data.
export function withOverlays(style, data) {
  const sources = { ...style.sources };
  for (const [key, id] of Object.entries(SOURCES)) {
    sources[id] = { type: 'geojson', data: data[key] || EMPTY };
  }
  return { ...style, sources, layers: [...style.layers, ...LAYERS] };
}
