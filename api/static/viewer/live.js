// The live alarm panel: alarms as they open, worsen, get a burst proposal and clear, from the
// server's event stream (/events/stream, Server-Sent Events). Each alarm is one row, kept up to
// date; open alarms are ringed on the map in every view, a new one pulses, and a click on a row
// flies to its sensor and opens it.
//
// EventSource cannot send headers: the stream is asked for as the page's other requests are,
// anonymously (the demo's sensors are readable by anyone); the browser reconnects by itself and
// sends Last-Event-ID, so nothing is lost across a dropped connection.

import { clock, forget, KIND_LABELS, proposalBox, RULE_LABELS } from './sensor.js';
import { apiURL, el, formatNumber, getJSON } from './util.js';

const MAX_ROWS = 40;
const PULSE_MS = 4500;
const PULSE_LAYER = 'ct-live-pulse';
// The server drops the tiles of a sensor whose state changed as the change's notification
// reaches it, about when the event does: the map asks for them a moment later.
const RELOAD_DELAY_MS = 700;

// An alarm row from GET /alarms.
function fromAlarm(a) {
  return {
    id: a.id,
    sensor: a.sensor,
    kind: a.kind,
    unit: a.unit,
    rule: a.rule,
    state: a.state,
    value: a.rule === 'rate' ? a.last_value : a.first_value,
    peak: a.peak_value,
    threshold: a.threshold,
    opened: a.opened_at,
    changed: a.cleared_at || a.updated_at,
    lon: a.lon,
    lat: a.lat,
    proposal: a.proposal,
  };
}

export class LiveAlarms {
  constructor({ root, list, count, status, map, setOverlay, openSensor, isolate, reloadTiles }) {
    Object.assign(this, {
      root, list, count, status, map, setOverlay, openSensor, isolate, reloadTiles,
    });
    this.reloading = null;
    this.rows = new Map(); // alarm id → row
    this.events = 0;
    this.connected = false;
    this.pulses = new Map(); // alarm id → pulse start (ms)
    this.source = null;
    this.frame = null;
  }

  start() {
    this.root.hidden = false;
    this.root.querySelector('header').addEventListener('click', () => {
      this.root.classList.toggle('collapsed');
    });
    this.connect();
    getJSON('alarms?limit=30').then((body) => {
      for (const a of body.alarms || []) {
        // what the stream brought meanwhile is newer; the list fills in what events leave out
        const seen = Object.entries(this.rows.get(a.id) || {}).filter(([, v]) => v != null);
        this.rows.set(a.id, { ...fromAlarm(a), ...Object.fromEntries(seen) });
      }
      this.render();
    }).catch(() => {}); // the stream still brings what happens from now on
    this.render();
  }

  connect() {
    this.source = new EventSource(apiURL('events/stream?kinds=alarm'));
    this.source.addEventListener('open', () => this.setConnected(true));
    this.source.addEventListener('error', () => this.setConnected(false));
    this.source.addEventListener('alarm', (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.receive(event);
    });
  }

  setConnected(on) {
    this.connected = on;
    const closed = this.source?.readyState === EventSource.CLOSED;
    this.status.className = `live-status ${on ? 'on' : closed ? 'off' : 'retry'}`;
    this.status.title = on ? '实时 live' : closed ? '不可用 unavailable' : '重连中 reconnecting…';
  }

  receive(event) {
    const p = event.payload || {};
    const id = p.alarm;
    if (id === undefined) return;
    this.events += 1;
    const row = this.rows.get(id) || {
      id, sensor: p.sensor, kind: p.kind, unit: p.unit, rule: p.rule, state: 'open',
      value: p.value, peak: p.peak, threshold: p.threshold, opened: p.at || event.at,
      lon: event.lon, lat: event.lat, proposal: null,
    };
    row.changed = p.at || event.at;
    if (event.action === 'opened') {
      Object.assign(row, { state: 'open', value: p.value, peak: p.peak, threshold: p.threshold });
      this.pulse(id);
    } else if (event.action === 'updated') {
      Object.assign(row, { value: p.value, peak: p.peak });
    } else if (event.action === 'cleared') {
      Object.assign(row, { state: 'cleared', value: p.value });
    } else if (event.action === 'proposal') {
      row.proposal = p;
      this.pulse(id);
    }
    this.rows.set(id, row);
    forget(row.sensor); // an open popup of this sensor reloads its readings
    this.render();
    if (event.action === 'opened' || event.action === 'cleared') this.scheduleReload();
  }

  scheduleReload() {
    if (this.reloading !== null) return;
    this.reloading = setTimeout(() => {
      this.reloading = null;
      this.reloadTiles();
    }, RELOAD_DELAY_MS);
  }

  ordered() {
    const rows = [...this.rows.values()];
    const open = rows.filter((r) => r.state === 'open');
    const closed = rows.filter((r) => r.state !== 'open');
    const ms = (iso) => Date.parse(iso) || 0; // times may come with different zone offsets
    open.sort((a, b) => ms(b.opened) - ms(a.opened) || b.id - a.id);
    closed.sort((a, b) => ms(b.changed || b.opened) - ms(a.changed || a.opened) || b.id - a.id);
    return [...open, ...closed].slice(0, MAX_ROWS);
  }

  rowNode(row, shownBursts) {
    const rule = RULE_LABELS[row.rule] || row.rule;
    const unit = row.unit || '';
    const reading = row.rule === 'rate'
      ? `${formatNumber(row.peak)} ${unit}/min (限 ${formatNumber(row.threshold)})`
      : `${formatNumber(row.state === 'open' ? row.peak ?? row.value : row.value)} ${unit}`
        + (Number.isFinite(row.threshold) ? ` (限 ${formatNumber(row.threshold)})` : '');
    const when = row.state === 'open' ? clock(row.opened) : `${clock(row.opened)} – ${clock(row.changed)}`;
    const node = el('li', {
      className: `alarm ${row.state}`,
      dataset: { alarm: String(row.id), sensor: row.sensor, state: row.state, rule: row.rule },
      title: '定位 fly to the sensor',
      onclick: (e) => {
        if (e.target.closest('button')) return;
        this.focus(row);
      },
    },
    el('div', { className: 'line' },
      el('span', { className: `badge ${row.state}` }, row.state === 'open' ? '告警' : '解除'),
      el('span', { className: 'sensor' }, row.sensor),
      el('span', { className: 'kind' }, KIND_LABELS[row.kind] || row.kind || ''),
      el('span', { className: 'time' }, when)),
    el('div', { className: 'line detail' },
      el('span', { className: 'rule' }, rule),
      el('span', { className: 'reading' }, reading)));
    const segment = row.proposal && !row.proposal.error ? row.proposal.segment : null;
    if (segment && !shownBursts.has(segment)) {
      shownBursts.add(segment); // sensors in alarm round one burst share its proposal
      node.append(proposalBox(row.proposal, this.isolate));
    } else if (segment) {
      node.append(el('div', { className: 'line detail same-burst' },
        `爆管研判 likely burst ${segment} (同上 as above)`));
    }
    return node;
  }

  render() {
    const rows = this.ordered();
    const open = rows.filter((r) => r.state === 'open').length;
    this.count.textContent = open ? `${open} 条告警 open` : '无告警 none open';
    this.count.classList.toggle('alert', open > 0);
    const shownBursts = new Set();
    this.list.replaceChildren(...rows.map((r) => this.rowNode(r, shownBursts)));
    this.root.classList.toggle('empty', rows.length === 0);
    this.drawRings();
  }

  // Open alarms as rings on the map; those that just happened pulse for a few seconds.
  drawRings() {
    const now = performance.now();
    const features = [...this.rows.values()]
      .filter((r) => Number.isFinite(r.lon) && Number.isFinite(r.lat)
        && (r.state === 'open' || now - (this.pulses.get(r.id) ?? -Infinity) < PULSE_MS))
      .map((r) => ({
        type: 'Feature',
        geometry: { type: 'Point', coordinates: [r.lon, r.lat] },
        properties: {
          alarm: r.id, state: r.state, fresh: now - (this.pulses.get(r.id) ?? -Infinity) < PULSE_MS,
        },
      }));
    this.setOverlay({ type: 'FeatureCollection', features });
  }

  pulse(id) {
    this.pulses.set(id, performance.now());
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.animate());
  }

  animate() {
    const now = performance.now();
    const active = [...this.pulses.values()].some((t) => now - t < PULSE_MS);
    const map = this.map;
    if (map.getLayer(PULSE_LAYER)) {
      const phase = (now % 1500) / 1500; // a ring widening and fading, every 1.5 s
      map.setPaintProperty(PULSE_LAYER, 'circle-radius', 10 + 34 * phase);
      map.setPaintProperty(PULSE_LAYER, 'circle-stroke-opacity', 1 - phase);
    }
    if (active) {
      this.frame = requestAnimationFrame(() => this.animate());
    } else {
      this.frame = null;
      this.drawRings(); // the pulses are over: their features lose "fresh"
    }
  }

  // Fly to the alarm's sensor and open it; only fly when the sensor cannot be read.
  async focus(row) {
    this.pulse(row.id);
    this.drawRings();
    let feature;
    try {
      const query = `sensor_id=${encodeURIComponent(row.sensor)}&limit=1`;
      const body = await getJSON(`collections/sensors/items?${query}`, 'application/geo+json');
      feature = body.features?.[0] || null;
    } catch {
      feature = null;
    }
    if (feature) this.openSensor(feature);
    else if (Number.isFinite(row.lon)) {
      this.map.flyTo({ center: [row.lon, row.lat], zoom: Math.max(this.map.getZoom(), 17) });
    }
  }

  snapshot() {
    return {
      connected: this.connected,
      events: this.events,
      rows: this.ordered().map(({ id, sensor, rule, state, value, peak, proposal }) => ({
        id, sensor, rule, state, value, peak, proposal: Boolean(proposal),
      })),
    };
  }
}
