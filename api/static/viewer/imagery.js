// Imagery before/after: the compare panel (two scene dates, a preset) over the slider of
// compare.js, with the view's polygon outlines drawn on both sides.

import { setMessage } from './panel.js';
import { $, state } from './state.js';
import { el, getJSON, GEOJSON } from './util.js';

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

export function showCompare() {
  const byId = new Map(state.scenes.map((s) => [s.id, s]));
  const before = byId.get($('compare-before-date').value);
  const after = byId.get($('compare-after-date').value);
  if (!before || !after) return;
  state.compare.show({ before, after, preset: $('compare-preset').value, overlay: compareOverlay() });
}

export async function toggleCompare() {
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

export function closeCompare() {
  if (!state.compare?.open) return;
  state.compare.hide();
  $('compare-panel').hidden = true;
  $('compare-tool').classList.remove('active');
  $('compare-tool').setAttribute('aria-pressed', 'false');
}
