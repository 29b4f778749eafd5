// "What is inside": the polygon tool's button and hint, and the server's answer for the polygon
// drawn (POST /query/within) in the results panel.

import { closeCompare } from './imagery.js';
import { loading, showResults } from './panel.js';
import { errorBox, querySummary } from './results.js';
import { $, state } from './state.js';
import { postJSON } from './util.js';

export function setDrawButton(active) {
  const button = $('draw-tool');
  button.classList.toggle('active', active);
  button.setAttribute('aria-pressed', String(active));
  const hint = $('tool-hint');
  hint.hidden = !active;
  hint.textContent = '单击添加顶点, 双击或点击起点结束, Esc 取消 · click to add vertices; '
    + 'double-click or click the first vertex to close; Esc cancels';
}

export async function runQuery(polygon) {
  showResults(loading('区域查询 querying the area…'));
  try {
    const body = await postJSON('query/within', { geometry: polygon });
    showResults(querySummary(body), 'query', body);
  } catch (error) {
    showResults(errorBox(error, '区域查询 Query'), 'query-error', { code: error.code });
  }
}

export function toggleDraw() {
  if (state.draw.active) {
    state.draw.cancel();
    return;
  }
  closeCompare();
  state.popup.remove();
  state.draw.start();
}
