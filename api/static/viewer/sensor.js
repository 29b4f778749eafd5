// A sensor in the identify popup: its state and latest value, a small chart of the last hours
// (inline SVG from /sensors/{id}/readings in 5-minute buckets: no chart library), and, when a
// pressure alarm proposed a burst, the pipe and the valves to close with a button that draws
// the isolation.

import { el, formatNumber, getJSON } from './util.js';

export const HOURS = 6;
const CACHE_MS = 4000; // the popup is drawn twice (tile attributes, then the full record)
// The SVG namespace as the HTML parser assigns it (the viewer's files spell out no URLs at all).
const SVG = (() => {
  const template = document.createElement('template');
  template.innerHTML = '<svg></svg>';
  return template.content.firstChild.namespaceURI;
})();

export const STATE_LABELS = {
  normal: '正常 normal',
  alarm: '告警 alarm',
  stale: '离线 stale',
};
export const KIND_LABELS = {
  pressure: '压力 pressure',
  level: '水位 level',
  gas: '燃气 gas',
  rain: '雨量 rain',
  air: '空气 PM2.5',
  flow: '流量 flow',
  temperature: '温度 temperature',
  quality: '水质 quality',
  other: '其他 other',
};
export const RULE_LABELS = {
  low: '低于下限 below low',
  high: '超过上限 above high',
  rate: '变化过快 changing fast',
};

const cache = new Map(); // sensor id → { at, promise }

function cached(key, load) {
  const hit = cache.get(key);
  if (hit && Date.now() - hit.at < CACHE_MS) return hit.promise;
  const promise = load();
  cache.set(key, { at: Date.now(), promise });
  return promise;
}

export function forget(sensorId) {
  cache.delete(`series:${sensorId}`);
  cache.delete(`alarms:${sensorId}`);
}

export function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '—';
  return date.toLocaleTimeString('en-GB', { hour12: false });
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) {
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

// The value axis: the readings' range, with a threshold in it when it is near enough to read
// against them (a gas alarm at 20 %LEL would flatten readings around 0.5 to a line).
function valueRange(points, thresholds) {
  let lo = Math.min(...points.map((p) => p.min));
  let hi = Math.max(...points.map((p) => p.max));
  const span = Math.max(hi - lo, Math.abs(hi) * 0.05, 1e-3);
  const shown = thresholds.filter((t) => t.value >= lo - 1.5 * span && t.value <= hi + 1.5 * span);
  for (const t of shown) {
    lo = Math.min(lo, t.value);
    hi = Math.max(hi, t.value);
  }
  const pad = Math.max(hi - lo, 1e-3) * 0.12;
  return { lo: lo - pad, hi: hi + pad, shown };
}

// A time series as an SVG: min–max band, mean line, thresholds dashed, latest value dotted.
export function seriesChart(points, { unit, thresholds = [], start, end, last }) {
  const width = 300;
  const height = 84;
  const m = { left: 40, right: 8, top: 8, bottom: 18 };
  const box = svg('svg', {
    class: 'series', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': `readings of the last ${HOURS} hours`,
  });
  if (!points.length) {
    box.append(svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'empty' },
      '无读数 no readings'));
    return box;
  }
  const t0 = start.getTime();
  const t1 = end.getTime();
  const { lo, hi, shown } = valueRange(points, thresholds);
  const x = (t) => m.left + ((t - t0) / Math.max(t1 - t0, 1)) * (width - m.left - m.right);
  const y = (v) => m.top + (1 - (v - lo) / (hi - lo)) * (height - m.top - m.bottom);
  const at = points.map((p) => ({ ...p, t: new Date(p.time).getTime() }));
  const band = [...at.map((p) => `${x(p.t).toFixed(1)},${y(p.max).toFixed(1)}`),
    ...[...at].reverse().map((p) => `${x(p.t).toFixed(1)},${y(p.min).toFixed(1)}`)];
  box.append(
    svg('rect', { x: m.left, y: m.top, width: width - m.left - m.right,
      height: height - m.top - m.bottom, class: 'frame' }),
    svg('polygon', { points: band.join(' '), class: 'band' }),
    svg('polyline', {
      points: at.map((p) => `${x(p.t).toFixed(1)},${y(p.mean).toFixed(1)}`).join(' '),
      class: 'mean',
    }),
  );
  for (const t of shown) {
    box.append(
      svg('line', { x1: m.left, x2: width - m.right, y1: y(t.value), y2: y(t.value),
        class: `threshold ${t.kind}` }),
      svg('text', { x: width - m.right - 2, y: y(t.value) - 3, 'text-anchor': 'end',
        class: 'threshold-label' }, `${t.label} ${formatNumber(t.value)}`),
    );
  }
  if (last && Number.isFinite(last.value)) {
    const lx = Math.min(x(last.time.getTime()), width - m.right);
    box.append(svg('circle', { cx: lx, cy: y(Math.min(Math.max(last.value, lo), hi)), r: 3.2,
      class: 'last' }));
  }
  const label = (text, attrs) => svg('text', { class: 'axis', ...attrs }, text);
  box.append(
    label(formatNumber(hi), { x: m.left - 4, y: m.top + 8, 'text-anchor': 'end' }),
    label(formatNumber(lo), { x: m.left - 4, y: height - m.bottom, 'text-anchor': 'end' }),
    label(unit || '', { x: m.left - 4, y: (height - m.bottom + m.top) / 2 + 4, 'text-anchor': 'end' }),
    label(clock(start.toISOString()).slice(0, 5), { x: m.left, y: height - 4 }),
    label(clock(end.toISOString()).slice(0, 5), { x: width - m.right, y: height - 4,
      'text-anchor': 'end' }),
  );
  return box;
}

function thresholdsOf(p) {
  const out = [];
  if (Number.isFinite(p.threshold_low)) out.push({ kind: 'low', label: '下限 low', value: p.threshold_low });
  if (Number.isFinite(p.threshold_high)) out.push({ kind: 'high', label: '上限 high', value: p.threshold_high });
  return out;
}

// The likely burst of a pressure alarm and what isolating it takes.
export function proposalBox(proposal, onIsolate) {
  if (!proposal) return null;
  const box = el('div', { className: 'proposal', title: proposal.basis || '' });
  box.append(el('strong', {}, '爆管研判 Likely burst'));
  if (proposal.error) {
    box.append(el('p', { className: 'note' }, proposal.error));
    return box;
  }
  const valves = proposal.isolation?.valves_to_close || proposal.valves_to_close || [];
  const names = valves.slice(0, 6).map((v) => v.node_id || v).join(', ');
  box.append(
    ' 管段 pipe ', el('code', {}, proposal.segment), ` (${proposal.network})`,
    el('p', { className: 'valves' }, `需关闭阀门 close ${valves.length}: `,
      names + (valves.length > 6 ? ' …' : '')),
  );
  if (onIsolate && proposal.segment) {
    box.append(el('button', {
      type: 'button',
      className: 'action danger',
      dataset: { action: 'show-isolation' },
      onclick: () => onIsolate(proposal.network, proposal.segment),
    }, '✕ 显示关阀方案 Show the isolation'));
  }
  return box;
}

async function fillChart(holder, p) {
  const end = new Date();
  const start = new Date(end.getTime() - HOURS * 3600e3);
  const query = `datetime=${encodeURIComponent(`${start.toISOString()}/..`)}&resolution=5min`;
  try {
    const body = await cached(`series:${p.sensor_id}`,
      () => getJSON(`sensors/${encodeURIComponent(p.sensor_id)}/readings?${query}`));
    const last = p.last_time ? { time: new Date(p.last_time), value: p.last_value } : null;
    holder.replaceChildren(seriesChart(body.points || [], {
      unit: body.unit, thresholds: thresholdsOf(p), start, end, last,
    }));
    holder.dataset.points = String((body.points || []).length);
  } catch (error) {
    holder.replaceChildren(el('p', { className: 'note' }, `读数 readings: ${error.message}`));
  }
}

async function fillAlarms(holder, p, onIsolate) {
  try {
    const body = await cached(`alarms:${p.sensor_id}`,
      () => getJSON(`alarms?sensor=${encodeURIComponent(p.sensor_id)}&limit=5`));
    const alarms = body.alarms || [];
    const open = alarms.filter((a) => a.state === 'open');
    const rows = open.map((a) => el('li', { className: 'open' },
      `${RULE_LABELS[a.rule] || a.rule} · ${formatNumber(a.peak_value)} ${a.unit} `
      + `(限 ${formatNumber(a.threshold)}) · since ${clock(a.opened_at)}`));
    const withProposal = alarms.find((a) => a.proposal && a.state === 'open')
      || (open.length ? null : alarms.find((a) => a.proposal));
    holder.replaceChildren(
      rows.length ? el('ul', { className: 'sensor-alarms' }, rows) : '',
      withProposal ? proposalBox(withProposal.proposal, onIsolate) : '',
    );
  } catch {
    holder.replaceChildren(); // alarms are extra: the popup stands without them
  }
}

// The sensor part of an identify popup; fills itself in as its requests come back.
export function sensorDetails(p, { onIsolate } = {}) {
  if (!p?.sensor_id) return null;
  const state = p.state || 'stale';
  const value = Number.isFinite(p.last_value) ? `${formatNumber(p.last_value)} ${p.unit || ''}` : '—';
  const chart = el('div', { className: 'chart', dataset: { sensor: p.sensor_id } },
    el('p', { className: 'note' }, '读数加载中 loading readings…'));
  const alarms = el('div', { className: 'sensor-alarm-box' });
  const box = el('div', { className: `sensor-live state-${state}` },
    el('div', { className: 'reading' },
      el('span', { className: `state-badge ${state}` }, STATE_LABELS[state] || state),
      el('span', { className: 'value' }, value),
      el('span', { className: 'when' }, p.last_time ? clock(p.last_time) : '')),
    el('p', { className: 'kind' }, `${KIND_LABELS[p.kind] || p.kind || ''} · 近 ${HOURS} 小时 last ${HOURS} h, 5 min`),
    chart,
    alarms);
  fillChart(chart, p);
  fillAlarms(alarms, p, onIsolate);
  return box;
}
