// What a collection is: read from the `kind` the server gives in /collections
// ({name: "components"} | {name: "grid", level} | {name: "pipes", network, part}), so no module
// reads meaning into collection ids. The sensors collection is read-only (kind null): it is
// known by its id.
import { state } from './state.js';

export const COMPONENTS = 'components';
export const SENSORS = 'sensors';

// Widths of the codes of each grid level (GB/T 30428.1), coarse to fine.
const GRID_WIDTHS = { district: [6], street: [9], community: [12], unit: [14, 15] };

function kindOf(collectionId) {
  return state.collections.get(collectionId)?.kind ?? null;
}

// The pipe network whose pipes a collection holds, else null.
export function pipeNetworkOf(collectionId) {
  const kind = kindOf(collectionId);
  return kind?.name === 'pipes' && kind.part === 'pipes' ? kind.network : null;
}

// The collections of a network searched by code, with the field holding the code.
export function networkCodeFields(network) {
  const parts = {};
  for (const [id, c] of state.collections) {
    if (c.kind?.name === 'pipes' && c.kind.network === network) parts[c.kind.part] = id;
  }
  return [[parts.pipes, 'pipe_id'], [parts.nodes, 'node_id']].filter(([id]) => id);
}

// The grid level of a collection (district, street, community, unit), else null.
export function gridLevelOf(collectionId) {
  const kind = kindOf(collectionId);
  return kind?.name === 'grid' ? kind.level : null;
}

// The grid collections published, coarse to fine, with the widths of their codes.
export function gridCollections() {
  const byLevel = new Map();
  for (const [id, c] of state.collections) {
    if (c.kind?.name === 'grid') byLevel.set(c.kind.level, id);
  }
  return Object.entries(GRID_WIDTHS)
    .filter(([level]) => byLevel.has(level))
    .map(([level, widths]) => [byLevel.get(level), widths]);
}

// Whether a collection holds the live sensors.
export function isSensors(collectionId) {
  return collectionId === SENSORS;
}
