#!/usr/bin/env bash
# Screenshot a page (by default the citytwin web viewer) with headless Chromium and software
# WebGL, so the viewer can be checked on a machine without a GPU or a display.
#
#   tests/e2e/screenshot.sh [URL] [OUTPUT.png]
#   tests/e2e/screenshot.sh http://127.0.0.1:8000/viewer /tmp/viewer.png
#   tests/e2e/screenshot.sh 'http://127.0.0.1:8000/viewer#view=pipelines&map=16/31.75/116.5' z16.png
#   CLICK=116.5,31.75 tests/e2e/screenshot.sh 'http://127.0.0.1:8000/viewer#map=16/31.75/116.5' id.png
#
# Chromium's own --screenshot --virtual-time-budget does not wait for MapLibre's web workers,
# so it sometimes captures the map before its tiles are drawn. Instead this drives Chromium over
# the DevTools protocol (a few lines of Node, which the viewer's npm set-up needs anyway) and
# captures once the viewer reports every tile and request done (window.citytwinViewer.ready(), or
# window.citytwinMap on other map pages), or after TIMEOUT_S. For scripted sessions (identify,
# traces, drawing, compare) see drive.mjs beside this script.
#
# Environment: CHROMIUM (browser binary), WINDOW_SIZE (default 1400,900), TIMEOUT_S (default 30),
# CLICK (lon,lat: click the map there before capturing, to show the identify popup).
# Besides the PNG path, it prints one line "REPORT {json}": load state, the layer list, how many
# features are drawn, and the text of the identify popup and status line.
set -euo pipefail

url="${1:-http://127.0.0.1:8000/viewer}"
output="$(realpath -m "${2:-viewer.png}")"
window_size="${WINDOW_SIZE:-1400,900}"
timeout_s="${TIMEOUT_S:-30}"
rm -f "$output"

find_browser() {
    local candidate
    for candidate in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
        if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "no Chromium found: install it (apt-get install chromium) or set CHROMIUM" >&2
    return 1
}

node_flags() {
    # Node 22+ has WebSocket built in; Node 20 needs the flag.
    if node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
        echo "--no-warnings"
    else
        echo "--experimental-websocket --no-warnings"
    fi
}

wait_for_port() {
    local i
    for i in $(seq 1 100); do
        if [[ -s "$profile/DevToolsActivePort" ]]; then
            head -n 1 "$profile/DevToolsActivePort"
            return 0
        fi
        sleep 0.1
    done
    echo "Chromium did not open its DevTools port; browser output:" >&2
    cat "$log" >&2
    return 1
}

command -v node >/dev/null || { echo "node is required (apt-get install nodejs)" >&2; exit 1; }
browser="$(find_browser)"
profile="$(mktemp -d)"
log="$(mktemp)"
browser_pid=""
cleanup() {
    if [[ -n "$browser_pid" ]]; then
        kill "$browser_pid" 2>/dev/null || true
        wait "$browser_pid" 2>/dev/null || true
    fi
    # Chromium's helper processes can still be writing to the profile for a moment.
    rm -rf "$profile" "$log" 2>/dev/null || { sleep 1; rm -rf "$profile" "$log"; }
}
trap cleanup EXIT

# Software WebGL (SwiftShader) for MapLibre; no background traffic from the browser itself.
"$browser" --headless --no-sandbox --disable-gpu \
    --use-angle=swiftshader --enable-unsafe-swiftshader \
    --disable-background-networking --disable-component-update --disable-sync \
    --no-first-run --hide-scrollbars \
    --user-data-dir="$profile" \
    --window-size="$window_size" \
    --remote-debugging-port=0 \
    about:blank >"$log" 2>&1 &
browser_pid=$!
port="$(wait_for_port)"

# shellcheck disable=SC2046
CDP_PORT="$port" PAGE_URL="$url" OUTPUT="$output" WINDOW_SIZE="$window_size" \
TIMEOUT_S="$timeout_s" CLICK="${CLICK:-}" node $(node_flags) --input-type=module -e '
import { writeFileSync } from "node:fs";

const { CDP_PORT, PAGE_URL, OUTPUT, WINDOW_SIZE, TIMEOUT_S, CLICK } = process.env;
const [width, height] = WINDOW_SIZE.split(",").map(Number);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A viewer page is ready when MapLibre has every tile of the view loaded and drawn; any other
// page when its document has loaded.
const READY = `(() => {
  if (document.readyState !== "complete") return "loading";
  const viewer = window.citytwinViewer;
  if (viewer) return viewer.ready() ? "ready" : "tiles";
  const map = window.citytwinMap;
  if (!map) return "no-map";
  return map.loaded() && map.areTilesLoaded() && !map.isMoving() ? "ready" : "tiles";
})()`;

async function openPage() {
  const response = await fetch(`http://127.0.0.1:${CDP_PORT}/json/new?about:blank`, { method: "PUT" });
  const target = await response.json();
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  let nextId = 0;
  const pending = new Map();
  socket.onmessage = (message) => {
    const reply = JSON.parse(message.data);
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
  return { send, close: () => socket.close() };
}

async function pageState(page) {
  const { result } = await page.send("Runtime.evaluate", { expression: READY, returnByValue: true });
  return result.value;
}

// Two "ready" answers in a row, so the last frame has been drawn; a page without a map gets a
// short grace period after load.
async function waitUntilDrawn(page) {
  const deadline = Date.now() + Number(TIMEOUT_S) * 1000;
  let readyStreak = 0;
  let noMapSince = null;
  let state = "loading";
  while (Date.now() < deadline) {
    state = await pageState(page);
    readyStreak = state === "ready" ? readyStreak + 1 : 0;
    if (readyStreak >= 2) return state;
    noMapSince = state === "no-map" ? (noMapSince ?? Date.now()) : null;
    if (noMapSince !== null && Date.now() - noMapSince > 5000) return state;
    await sleep(250);
  }
  console.error(`warning: page not settled after ${TIMEOUT_S}s (state: ${state}); capturing anyway`);
  return state;
}

// Click the map at lon,lat like a user would, then give the identify request time to answer.
async function clickAt(page, lonLat) {
  const expression = `(() => {
    const map = window.citytwinMap;
    const box = map.getContainer().getBoundingClientRect();
    const p = map.project([${lonLat}]);
    return { x: box.left + p.x, y: box.top + p.y };
  })()`;
  const { result } = await page.send("Runtime.evaluate", { expression, returnByValue: true });
  const { x, y } = result.value;
  await page.send("Input.dispatchMouseEvent", { type: "mouseMoved", x, y });
  for (const type of ["mousePressed", "mouseReleased"]) {
    await page.send("Input.dispatchMouseEvent", { type, x, y, button: "left", clickCount: 1 });
  }
  await sleep(1500);
}

const page = await openPage();
await page.send("Page.enable");
await page.send("Emulation.setDeviceMetricsOverride", {
  width, height, deviceScaleFactor: 1, mobile: false,
});
await page.send("Page.navigate", { url: PAGE_URL });
await sleep(500);
const state = await waitUntilDrawn(page);
if (CLICK && state === "ready") await clickAt(page, CLICK);
const { data } = await page.send("Page.captureScreenshot", { format: "png" });
writeFileSync(OUTPUT, Buffer.from(data, "base64"));
// What a person would read off the page, for tests: one JSON line on standard output.
const REPORT = `(() => ({
  state: ${JSON.stringify(state)},
  layers: [...document.querySelectorAll("#layer-list li")].map((li) => li.dataset.collection),
  rendered: window.citytwinMap ? window.citytwinMap.queryRenderedFeatures().length : 0,
  popup: (document.querySelector(".maplibregl-popup") || {}).innerText || "",
  status: (document.getElementById("status") || {}).innerText || "",
}))()`;
const report = await page.send("Runtime.evaluate", { expression: REPORT, returnByValue: true });
console.log("REPORT " + JSON.stringify(report.result.value));
page.close();
'

if [[ ! -s "$output" ]]; then
    echo "screenshot failed for $url; browser output:" >&2
    cat "$log" >&2
    exit 1
fi
echo "$output"
