// Pipe network analyses from a clicked pipe: traces (upstream, downstream, connected) and burst
// isolation, each drawn on the map's analysis overlay and summed up in the results panel.

import { pipeNetworkOf } from './kinds.js';
import {
  fitTo, highlight, loading, setOverlay, showResults,
} from './panel.js';
import { errorBox, isolationSummary, traceSummary } from './results.js';
import { state } from './state.js';
import { el, postJSON } from './util.js';

// The buttons of a pipe's popup: traces on every network, burst isolation on pressure ones.
export function pipeActions(collection, properties) {
  const name = pipeNetworkOf(collection);
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

export async function runTrace(network, pipeId, direction) {
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

export async function runIsolation(network, pipeId) {
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
