// Drive the citytwin viewer in headless Chromium (software WebGL) through a list of steps, over
// the DevTools protocol, and report what a person would read off the page.
//
//   node drive.mjs SCENARIO.json          (Node 20 needs --experimental-websocket)
//
// SCENARIO: { "origin": "http://127.0.0.1:8000", "window": [1400, 900], "timeout_s": 40,
//             "steps": [ {"do": "goto", "url": "/viewer#view=pipelines"}, ... ] }
// Steps:
//   goto {url}                 open a page (relative to origin) and wait until it is drawn
//   ready {timeout_s?}         wait until window.citytwinViewer.ready() holds twice in a row
//   wait {until, timeout_s?}   wait until a JavaScript expression is truthy
//   click {lonlat | selector | xy}, dblclick {lonlat | xy}, move {lonlat | xy}
//   drag {selector | lonlat | xy, to: [x, y]}   press, move, release
//   key {key}                  a key press (Escape, Enter, ...)
//   eval {expr, name}          evaluate; the value lands in the report under name
//   shot {path}                PNG screenshot
//   sleep {ms}
// Every request the page makes is recorded; the report lists those that did not go to origin
// (data: and blob: URLs are the page's own). One line "REPORT {json}" on standard output.
//
// Environment: CHROMIUM (browser binary; default: chromium, chromium-browser, google-chrome).

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const scenario = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const origin = new URL(scenario.origin).origin;
const [width, height] = scenario.window || [1400, 900];
const defaultTimeout = (scenario.timeout_s || 40) * 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function findBrowser() {
  for (const name of [process.env.CHROMIUM, 'chromium', 'chromium-browser', 'google-chrome']) {
    if (!name) continue;
    try {
      return execFileSync('sh', ['-c', `command -v "${name}"`], { encoding: 'utf8' }).trim();
    } catch {
      // not this one
    }
  }
  throw new Error('no Chromium found: install it (apt-get install chromium) or set CHROMIUM');
}

const profile = mkdtempSync(join(tmpdir(), 'citytwin-drive-'));
const browser = spawn(findBrowser(), [
  '--headless', '--no-sandbox', '--disable-gpu',
  '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--no-first-run', '--hide-scrollbars', '--mute-audio',
  `--user-data-dir=${profile}`, `--window-size=${width},${height}`,
  '--remote-debugging-port=0', 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe'] });
let browserLog = '';
browser.stderr.on('data', (chunk) => { browserLog += chunk; });

function cleanup() {
  try { browser.kill('SIGTERM'); } catch { /* gone */ }
  for (let i = 0; i < 5; i += 1) {
    try { rmSync(profile, { recursive: true, force: true }); return; } catch { /* busy */ }
  }
}
process.on('exit', cleanup);

async function devtoolsPort() {
  const file = join(profile, 'DevToolsActivePort');
  for (let i = 0; i < 150; i += 1) {
    if (existsSync(file)) {
      const text = readFileSync(file, 'utf8').trim();
      if (text) return text.split('\n')[0];
    }
    await sleep(100);
  }
  throw new Error(`Chromium did not open its DevTools port:\n${browserLog.slice(-2000)}`);
}

async function openPage(port) {
  const response = await fetch(`http://127.0.0.1:${port}/json/new?about:blank`, { method: 'PUT' });
  const target = await response.json();
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  let nextId = 0;
  const pending = new Map();
  const listeners = [];
  socket.onmessage = (message) => {
    const reply = JSON.parse(message.data);
    if (reply.method) {
      for (const listener of listeners) listener(reply.method, reply.params);
      return;
    }
    if (!pending.has(reply.id)) return;
    const { resolve, reject } = pending.get(reply.id);
    pending.delete(reply.id);
    if (reply.error) reject(new Error(reply.error.message));
    else resolve(reply.result);
  };
  const send = (method, params = {}) => new Promise((resolve, reject) => {
    const id = ++nextId;
    pending.set(id, { resolve, reject });
    socket.send(JSON.stringify({ id, method, params }));
  });
  return { send, on: (listener) => listeners.push(listener), close: () => socket.close() };
}

const report = { steps: [], requests: 0, outside: [], console_errors: [], values: {} };

async function evaluate(page, expression) {
  const { result, exceptionDetails } = await page.send('Runtime.evaluate', {
    expression, returnByValue: true, awaitPromise: true,
  });
  if (exceptionDetails) {
    throw new Error(`${expression}: ${exceptionDetails.exception?.description || exceptionDetails.text}`);
  }
  return result.value;
}

async function waitFor(page, expression, timeoutMs, streak = 1) {
  const deadline = Date.now() + timeoutMs;
  let good = 0;
  let last;
  while (Date.now() < deadline) {
    let ok = false;
    try {
      last = await evaluate(page, expression);
      ok = Boolean(last);
    } catch (error) {
      last = `error: ${error.message}`;
    }
    good = ok ? good + 1 : 0;
    if (good >= streak) return last;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${expression} (last: ${JSON.stringify(last)})`);
}

const READY = '(() => { const v = window.citytwinViewer; return !!(document.readyState === "complete" && v && v.ready()); })()';

async function pointOf(page, step) {
  if (step.xy) return { x: step.xy[0], y: step.xy[1] };
  if (step.lonlat) {
    return evaluate(page, `(() => {
      const map = window.citytwinMap;
      const box = map.getContainer().getBoundingClientRect();
      const p = map.project(${JSON.stringify(step.lonlat)});
      return { x: box.left + p.x, y: box.top + p.y };
    })()`);
  }
  return evaluate(page, `(() => {
    const node = document.querySelector(${JSON.stringify(step.selector)});
    if (!node) return null;
    node.scrollIntoView({ block: 'nearest' }); // inside the panel's scroll area
    const box = node.getBoundingClientRect();
    return { x: box.left + box.width / 2, y: box.top + box.height / 2 };
  })()`);
}

async function mouse(page, type, { x, y }, clickCount = 1) {
  await page.send('Input.dispatchMouseEvent', { type, x, y, button: 'left', clickCount });
}

async function click(page, step, count = 1) {
  const point = await pointOf(page, step);
  if (!point) throw new Error(`nothing to click: ${JSON.stringify(step)}`);
  await page.send('Input.dispatchMouseEvent', { type: 'mouseMoved', x: point.x, y: point.y });
  for (let n = 1; n <= count; n += 1) {
    await mouse(page, 'mousePressed', point, n);
    await mouse(page, 'mouseReleased', point, n);
  }
}

const KEYS = { Escape: 27, Enter: 13, Backspace: 8 };

async function run(page, step) {
  const timeout = (step.timeout_s ? step.timeout_s * 1000 : defaultTimeout);
  switch (step.do) {
    case 'goto':
      // A fresh page each time, also when only the #hash differs from the current address.
      await page.send('Page.navigate', { url: 'about:blank' });
      await page.send('Page.navigate', { url: new URL(step.url, origin).href });
      await sleep(300);
      await waitFor(page, READY, timeout, 2);
      return null;
    case 'ready':
      await sleep(step.settle_ms ?? 250);
      await waitFor(page, READY, timeout, 2);
      return null;
    case 'wait':
      await waitFor(page, step.until, timeout);
      return null;
    case 'click':
      await click(page, step, 1);
      return null;
    case 'dblclick':
      await click(page, step, 2);
      return null;
    case 'drag': {
      // press on {selector|lonlat|xy}, move to {to: [x, y]} in a few steps, release
      const from = await pointOf(page, step);
      const [x, y] = step.to;
      await page.send('Input.dispatchMouseEvent', { type: 'mouseMoved', ...from });
      await mouse(page, 'mousePressed', from);
      for (let i = 1; i <= 5; i += 1) {
        const at = { x: from.x + ((x - from.x) * i) / 5, y: from.y + ((y - from.y) * i) / 5 };
        await page.send('Input.dispatchMouseEvent', { type: 'mouseMoved', ...at, button: 'left', buttons: 1 });
      }
      await mouse(page, 'mouseReleased', { x, y });
      return null;
    }
    case 'move': {
      const point = await pointOf(page, step);
      await page.send('Input.dispatchMouseEvent', { type: 'mouseMoved', x: point.x, y: point.y });
      return null;
    }
    case 'key': {
      const code = KEYS[step.key] || 0;
      const common = { key: step.key, code: step.key, windowsVirtualKeyCode: code };
      await page.send('Input.dispatchKeyEvent', { type: 'keyDown', ...common });
      await page.send('Input.dispatchKeyEvent', { type: 'keyUp', ...common });
      return null;
    }
    case 'eval': {
      const value = await evaluate(page, step.expr);
      if (step.name) report.values[step.name] = value;
      return value;
    }
    case 'shot': {
      const { data } = await page.send('Page.captureScreenshot', { format: 'png' });
      writeFileSync(step.path, Buffer.from(data, 'base64'));
      return step.path;
    }
    case 'sleep':
      await sleep(step.ms);
      return null;
    default:
      throw new Error(`unknown step ${step.do}`);
  }
}

try {
  const port = await devtoolsPort();
  const page = await openPage(port);
  page.on((method, params) => {
    if (method === 'Network.requestWillBeSent') {
      const url = params.request.url;
      report.requests += 1;
      const local = url.startsWith('data:') || url.startsWith('blob:') || url === 'about:blank'
        || new URL(url).origin === origin;
      if (!local && !report.outside.includes(url)) report.outside.push(url);
    } else if (method === 'Runtime.exceptionThrown') {
      report.console_errors.push(params.exceptionDetails?.exception?.description
        || params.exceptionDetails?.text);
    } else if (method === 'Runtime.consoleAPICalled' && params.type === 'error') {
      report.console_errors.push(params.args.map((a) => a.value ?? a.description).join(' '));
    }
  });
  await page.send('Network.enable');
  await page.send('Runtime.enable');
  await page.send('Page.enable');
  await page.send('Emulation.setDeviceMetricsOverride', {
    width, height, deviceScaleFactor: 1, mobile: false,
  });
  for (const [index, step] of scenario.steps.entries()) {
    const started = Date.now();
    try {
      await run(page, step);
      report.steps.push({ index, do: step.do, name: step.name, ms: Date.now() - started });
    } catch (error) {
      report.steps.push({ index, do: step.do, name: step.name, error: error.message });
      report.failed = { index, step, error: error.message };
      if (scenario.screenshot_on_failure) {
        const { data } = await page.send('Page.captureScreenshot', { format: 'png' });
        writeFileSync(scenario.screenshot_on_failure, Buffer.from(data, 'base64'));
      }
      break;
    }
  }
  page.close();
} catch (error) {
  report.failed = { error: error.message };
}
console.log(`REPORT ${JSON.stringify(report)}`);
cleanup();
process.exit(0);
