// Drawing a polygon on the map by hand: click the vertices; double-click, or click the first
// vertex again, to close it; Esc cancels. While drawing, map clicks belong to the tool (no
// identify) and double-click does not zoom.

const CLOSE_PX = 10; // a click this close to the first vertex closes the ring
const SAME_PX = 4; // the two clicks of a double-click land on the same spot: one vertex

export class PolygonDraw {
  // setData(FeatureCollection) draws; onFinish(Polygon) gets the closed ring in lon/lat.
  constructor(map, { setData, onFinish, onChange }) {
    this.map = map;
    this.setData = setData;
    this.onFinish = onFinish;
    this.onChange = onChange || (() => {});
    this.active = false;
    this.vertices = [];
    this.cursor = null;
    this._onKey = (event) => {
      if (event.key === 'Escape' && this.active) this.cancel();
      if (event.key === 'Enter' && this.active) this.finish();
      if (event.key === 'Backspace' && this.active && this.vertices.length) {
        this.vertices.pop();
        this.render();
      }
    };
  }

  setMap(map) {
    this.map = map;
  }

  start() {
    this.active = true;
    this.vertices = [];
    this.cursor = null;
    this.map.doubleClickZoom.disable();
    this.map.getCanvas().style.cursor = 'crosshair';
    document.addEventListener('keydown', this._onKey);
    this.render();
    this.onChange(this);
  }

  stop() {
    this.active = false;
    this.cursor = null;
    document.removeEventListener('keydown', this._onKey);
    this.map.getCanvas().style.cursor = '';
    // Re-enabled after the double-click that closed the ring has passed.
    setTimeout(() => this.map.doubleClickZoom.enable(), 350);
    this.onChange(this);
  }

  cancel() {
    this.vertices = [];
    this.stop();
    this.setData({ type: 'FeatureCollection', features: [] });
  }

  // A map click while drawing; true when the tool took it.
  click(event) {
    if (!this.active) return false;
    const point = event.point;
    if (this.vertices.length >= 3) {
      const first = this.map.project(this.vertices[0]);
      if (Math.hypot(first.x - point.x, first.y - point.y) <= CLOSE_PX) {
        this.finish();
        return true;
      }
    }
    const last = this.vertices[this.vertices.length - 1];
    if (last) {
      const p = this.map.project(last);
      if (Math.hypot(p.x - point.x, p.y - point.y) <= SAME_PX) return true;
    }
    this.vertices.push([event.lngLat.lng, event.lngLat.lat]);
    this.render();
    this.onChange(this);
    return true;
  }

  dblclick(event) {
    if (!this.active) return false;
    event.preventDefault();
    this.finish();
    return true;
  }

  move(event) {
    if (!this.active || this.vertices.length === 0) return;
    this.cursor = [event.lngLat.lng, event.lngLat.lat];
    this.render();
  }

  finish() {
    if (this.vertices.length < 3) return; // not a polygon yet: keep drawing
    const ring = [...this.vertices, this.vertices[0]];
    const polygon = { type: 'Polygon', coordinates: [ring] };
    this.stop();
    this.setData({
      type: 'FeatureCollection',
      features: [{ type: 'Feature', geometry: polygon, properties: {} }],
    });
    this.onFinish(polygon);
  }

  render() {
    const features = [];
    const line = this.cursor ? [...this.vertices, this.cursor] : [...this.vertices];
    if (line.length >= 3) {
      features.push({
        type: 'Feature',
        geometry: { type: 'Polygon', coordinates: [[...line, line[0]]] },
        properties: {},
      });
    } else if (line.length === 2) {
      features.push({ type: 'Feature', geometry: { type: 'LineString', coordinates: line }, properties: {} });
    }
    this.vertices.forEach((v, i) => features.push({
      type: 'Feature',
      geometry: { type: 'Point', coordinates: v },
      properties: { first: i === 0 },
    }));
    this.setData({ type: 'FeatureCollection', features });
  }
}
