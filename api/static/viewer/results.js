// The results panel: any JSON answer of the API drawn as tables (so a new key in an answer shows
// up without a viewer change), with a few headline figures on top of the answers we know.

import {
  el, formatArea, formatLength, formatNumber, formatValue, keyLabel, valueLabel,
} from './util.js';

const MAX_ROWS = 60;
const MAX_LIST = 24;
const NOTE_KEYS = new Set(['method', 'reason', 'note', 'flow_rule']);

function isScalar(value) {
  return value === null || typeof value !== 'object';
}

function isRecordList(value) {
  return Array.isArray(value) && value.length > 0 && value.every((v) => v && typeof v === 'object'
    && !Array.isArray(v));
}

function looksLikeGeometry(value) {
  return value && typeof value === 'object' && typeof value.type === 'string'
    && ('coordinates' in value || 'geometries' in value || 'features' in value);
}

function cell(key, value) {
  if (typeof value === 'string' && /^#[0-9a-f]{6}$/i.test(value)) {
    return el('td', {}, el('span', { className: 'chip', style: { background: value } }), value);
  }
  if (Array.isArray(value) && value.every(isScalar)) return el('td', {}, listText(value));
  const text = key === 'status' || key === 'kind' || key === 'state'
    ? valueLabel(value) : formatValue(value);
  return el('td', { className: typeof value === 'number' ? 'num' : '' }, text);
}

function listText(values) {
  if (values.length === 0) return 'none 无';
  const shown = values.slice(0, MAX_LIST).map((v) => formatValue(v)).join(', ');
  return values.length > MAX_LIST ? `${shown} … (+${values.length - MAX_LIST})` : shown;
}

// key → value rows of the scalar members of an object.
function keyValueTable(entries) {
  const table = el('table', { className: 'kv' });
  for (const [key, value] of entries) {
    const row = table.insertRow();
    row.append(el('th', {}, keyLabel(key)), cell(key, value));
  }
  return table;
}

// A list of records as one table; columns are the union of their keys.
function recordTable(records) {
  const columns = [];
  for (const record of records) {
    for (const key of Object.keys(record)) {
      if (!columns.includes(key)) columns.push(key);
    }
  }
  const table = el('table', { className: 'grid' });
  const head = table.createTHead().insertRow();
  for (const key of columns) head.append(el('th', {}, keyLabel(key)));
  const body = table.createTBody();
  for (const record of records.slice(0, MAX_ROWS)) {
    const row = body.insertRow();
    for (const key of columns) row.append(cell(key, record[key]));
  }
  const wrap = el('div', { className: 'table-wrap' }, table);
  if (records.length > MAX_ROWS) {
    wrap.append(el('p', { className: 'note' }, `… ${records.length - MAX_ROWS} more rows`));
  }
  return wrap;
}

// An object as a section: its scalars in one key/value table, then each nested member.
export function renderObject(object, depth = 0, skip = new Set()) {
  const box = el('div', { className: `answer depth-${depth}` });
  const entries = Object.entries(object).filter(([k, v]) => !skip.has(k) && !looksLikeGeometry(v));
  const notes = entries.filter(([k, v]) => NOTE_KEYS.has(k) && typeof v === 'string');
  const simple = entries.filter(([k, v]) => !NOTE_KEYS.has(k)
    && (isScalar(v) || (Array.isArray(v) && v.every(isScalar))));
  const nested = entries.filter(([k]) => !NOTE_KEYS.has(k) && !simple.some(([s]) => s === k));
  if (simple.length) box.append(keyValueTable(simple));
  for (const [key, value] of nested) {
    const body = isRecordList(value) ? recordTable(value)
      : Array.isArray(value) ? el('p', {}, listText(value.map((v) => JSON.stringify(v))))
        : renderObject(value, depth + 1);
    if (depth === 0) {
      box.append(el('section', { className: 'answer-section', dataset: { key } },
        el('h3', {}, keyLabel(key)), body));
    } else {
      // Short tables open (counts by status, by utility), long or wide ones one click away.
      const open = isRecordList(value) && value.length <= 8
        && Object.keys(value[0]).length <= 5;
      box.append(el('details', { dataset: { key }, open }, el('summary', {}, keyLabel(key)), body));
    }
  }
  for (const [, text] of notes) box.append(el('p', { className: 'note' }, text));
  return box;
}

export function errorBox(error, what) {
  return el('div', { className: 'error-box', role: 'alert' },
    el('strong', {}, `${what} failed 失败`),
    el('p', {}, error.message || String(error)),
    error.code ? el('p', { className: 'note' }, `code: ${error.code}`) : null);
}

function figures(pairs) {
  return el('div', { className: 'figures' }, pairs.filter(([, v]) => v !== undefined).map(
    ([label, value]) => el('div', { className: 'figure' },
      el('span', { className: 'value' }, value), el('span', { className: 'label' }, label)),
  ));
}

function warnings(list) {
  if (!Array.isArray(list) || list.length === 0) return null;
  return el('ul', { className: 'warnings' }, list.map((w) => el('li', {}, w)));
}

// "What is inside": the area's headline figures, then every part of the answer.
export function querySummary(body) {
  const out = el('div', { className: 'summary', dataset: { kind: 'query' } });
  const pairs = [];
  if (body.area?.area_m2 !== undefined) pairs.push(['面积 area', formatArea(body.area.area_m2)]);
  if (body.components?.total !== undefined) {
    pairs.push(['部件 components', formatNumber(body.components.total)]);
  }
  if (body.pipes?.total_length_m !== undefined) {
    pairs.push(['管线 pipes', formatLength(body.pipes.total_length_m)]);
  }
  if (body.unit_grids?.count !== undefined) {
    pairs.push(['单元网格 unit grids', formatNumber(body.unit_grids.count)]);
  }
  if (body.buildings?.count !== undefined) {
    pairs.push(['建筑 buildings', formatNumber(body.buildings.count)]);
  }
  out.append(el('h2', { className: 'result-title' }, '区域查询 What is inside'));
  if (pairs.length) out.append(figures(pairs));
  out.append(renderObject(body));
  return out;
}

const DIRECTION_LABELS = {
  upstream: '上游追踪 Upstream trace',
  downstream: '下游追踪 Downstream trace',
  connected: '连通分析 Connected trace',
};

export function traceSummary(body) {
  const out = el('div', { className: 'summary', dataset: { kind: 'trace' } });
  const totals = body.totals || {};
  out.append(
    el('h2', { className: 'result-title' }, DIRECTION_LABELS[body.direction] || 'Trace'),
    el('p', { className: 'subtitle' },
      `${body.network} · from ${body.start?.segment || body.start?.node || '?'}`),
    figures([
      ['管段 segments', formatNumber(totals.segments ?? 0)],
      ['长度 length', formatLength(totals.length_m ?? 0)],
      ['节点 nodes', formatNumber(totals.nodes ?? 0)],
    ]),
  );
  out.append(warnings(body.warnings) || '');
  out.append(renderObject(body, 0, new Set(['type', 'features', 'warnings', 'network',
    'direction', 'start'])));
  return out;
}

export function isolationSummary(body, onValve) {
  const out = el('div', { className: 'summary', dataset: { kind: 'isolation' } });
  const valves = body.valves_to_close || [];
  out.append(
    el('h2', { className: 'result-title' }, '爆管关阀 Burst isolation'),
    el('p', { className: 'subtitle' }, `${body.network} · burst pipe ${body.burst?.segment || '?'}`),
    figures([
      ['需关阀门 valves to close', formatNumber(valves.length)],
      ['停水管段 pipes out', formatNumber((body.isolated?.segments ?? 0)
        + (body.cut_off?.segments ?? 0))],
      ['用户点 service points', formatNumber(body.service_points?.count ?? 0)],
      ['停水范围 outage area', formatArea(body.outage_area_m2 ?? 0)],
    ]),
  );
  out.append(warnings(body.warnings) || '');
  if (valves.length) {
    const list = el('ol', { className: 'valves' });
    for (const valve of valves) {
      list.append(el('li', {},
        el('button', {
          type: 'button',
          className: 'link',
          title: 'zoom to the valve',
          onclick: () => onValve(valve),
        }, valve.node_id),
        ` ${valueLabel(valve.state)}`));
    }
    out.append(el('section', { className: 'answer-section' },
      el('h3', {}, '需关闭阀门 Valves to close'), list));
  }
  out.append(renderObject(body, 0, new Set(['type', 'features', 'warnings', 'network', 'burst',
    'valves_to_close', 'outage_area'])));
  return out;
}
