// Before/after imagery: two maps stacked over the main one, each showing one scene of the raster
// catalog, kept on the same camera; the "after" map is clipped to the right of a vertical divider
// the user drags.

/* global maplibregl */

import { API_ROOT } from './util.js';

function sceneTiles(sceneId, preset) {
  // Built as text: the URL parser would escape the {z}/{x}/{y} placeholders.
  const id = encodeURIComponent(sceneId);
  const base = API_ROOT.href.replace(/\/$/, '');
  return `${base}/raster/scenes/${id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?preset=${preset}`;
}

// A side's style: the scene, plus outlines of the view's vector layers named in `outlines`
// (communities, detected changes) from the view's own tile source.
function sideStyle(scene, preset, overlay) {
  const sources = {
    scene: {
      type: 'raster',
      tiles: [sceneTiles(scene.id, preset)],
      tileSize: 256,
      maxzoom: 18,
      ...(Array.isArray(scene.bbox) && scene.bbox.length === 4 ? { bounds: scene.bbox } : {}),
    },
  };
  const layers = [
    { id: 'background', type: 'background', paint: { 'background-color': '#1d2126' } },
    { id: 'scene', type: 'raster', source: 'scene' },
  ];
  if (overlay) {
    sources.view = overlay.source;
    for (const layer of overlay.layers) {
      layers.push({
        id: `outline-${layer.id}`,
        type: 'line',
        source: 'view',
        'source-layer': layer.sourceLayer,
        paint: { 'line-color': layer.color, 'line-width': layer.width, 'line-opacity': 0.9 },
      });
    }
  }
  return { version: 8, name: `scene ${scene.id}`, sources, layers };
}

export class Compare {
  constructor(elements, mainMap) {
    this.el = elements; // { root, before, after, divider, labelBefore, labelAfter }
    this.main = mainMap;
    this.maps = null;
    this.fraction = 0.5;
    this.syncing = false;
    this._drag = this._drag.bind(this);
    this._endDrag = this._endDrag.bind(this);
    this._resize = () => this._place();
    elements.divider.addEventListener('pointerdown', (event) => {
      event.preventDefault();
      elements.divider.setPointerCapture?.(event.pointerId);
      window.addEventListener('pointermove', this._drag);
      window.addEventListener('pointerup', this._endDrag);
    });
    elements.divider.addEventListener('keydown', (event) => {
      const step = event.key === 'ArrowLeft' ? -0.05 : event.key === 'ArrowRight' ? 0.05 : 0;
      if (step) this.setFraction(this.fraction + step);
    });
  }

  get open() {
    return this.maps !== null;
  }

  show({ before, after, preset, overlay }) {
    const camera = {
      center: this.main.getCenter(),
      zoom: this.main.getZoom(),
      bearing: this.main.getBearing(),
      pitch: this.main.getPitch(),
    };
    this.el.root.hidden = false;
    this.el.labelBefore.textContent = `${label(before)} · 前 before`;
    this.el.labelAfter.textContent = `后 after · ${label(after)}`;
    if (this.maps) {
      this.maps.before.setStyle(sideStyle(before, preset, overlay));
      this.maps.after.setStyle(sideStyle(after, preset, overlay));
      this._place();
      return;
    }
    const make = (container, scene) => new maplibregl.Map({
      container,
      style: sideStyle(scene, preset, overlay),
      ...camera,
      attributionControl: false,
      dragRotate: false,
      pitchWithRotate: false,
    });
    this.maps = { before: make(this.el.before, before), after: make(this.el.after, after) };
    this.maps.before.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
    this.maps.after.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
    const follow = (from, others) => () => {
      if (this.syncing) return;
      this.syncing = true;
      const view = {
        center: from.getCenter(), zoom: from.getZoom(), bearing: from.getBearing(), pitch: from.getPitch(),
      };
      for (const other of others) other.jumpTo(view);
      this.syncing = false;
    };
    this.maps.before.on('move', follow(this.maps.before, [this.maps.after, this.main]));
    this.maps.after.on('move', follow(this.maps.after, [this.maps.before, this.main]));
    window.addEventListener('resize', this._resize);
    this._place();
  }

  hide() {
    if (!this.maps) return;
    this.maps.before.remove();
    this.maps.after.remove();
    this.maps = null;
    this.el.root.hidden = true;
    window.removeEventListener('resize', this._resize);
  }

  ready() {
    if (!this.maps) return true;
    return Object.values(this.maps).every((m) => m.loaded() && m.areTilesLoaded() && !m.isMoving());
  }

  setFraction(fraction) {
    this.fraction = Math.min(0.98, Math.max(0.02, fraction));
    this._place();
  }

  _place() {
    const width = this.el.root.clientWidth;
    const x = Math.round(width * this.fraction);
    this.el.after.style.clipPath = `inset(0 0 0 ${x}px)`;
    this.el.divider.style.left = `${x}px`;
    this.el.divider.setAttribute('aria-valuenow', String(Math.round(this.fraction * 100)));
    this.el.labelBefore.style.right = `${width - x + 12}px`;
    this.el.labelAfter.style.left = `${x + 12}px`;
  }

  _drag(event) {
    const box = this.el.root.getBoundingClientRect();
    this.setFraction((event.clientX - box.left) / box.width);
  }

  _endDrag() {
    window.removeEventListener('pointermove', this._drag);
    window.removeEventListener('pointerup', this._endDrag);
  }
}

function label(scene) {
  const date = scene.datetime ? scene.datetime.slice(0, 10) : '';
  return date ? `${date}` : scene.id;
}
