// What a collection is, told from its name: the one place where the viewer reads meaning into
// collection ids (`<network>_pipes`, `<network>_nodes`, `grid_<level>`, `components`, `sensors`).
// Each concern has one function here; once /collections/{id} carries a `kind` field, these
// functions switch to it and no other module changes.

export const COMPONENTS = 'components';
export const SENSORS = 'sensors';

const PIPES_SUFFIX = '_pipes';
const NODES_SUFFIX = '_nodes';

// Grid levels: the collection of each, and the widths of their codes (GB/T 30428.1).
const GRID_LEVELS = [
  ['district', 'grid_district', [6]],
  ['street', 'grid_street', [9]],
  ['community', 'grid_community', [12]],
  ['unit', 'grid_unit', [14, 15]],
];

// The pipe network whose pipes a collection holds (`water_pipes` → `water`), else null.
// Kind-by-name: switch to the collection's `kind` when the server gives it.
export function pipeNetworkOf(collectionId) {
  return collectionId?.endsWith(PIPES_SUFFIX)
    ? collectionId.slice(0, -PIPES_SUFFIX.length) : null;
}

// The collections of a network searched by code, with the field holding the code.
// Kind-by-name: switch to the collection's `kind` when the server gives it.
export function networkCodeFields(network) {
  return [[`${network}${PIPES_SUFFIX}`, 'pipe_id'], [`${network}${NODES_SUFFIX}`, 'node_id']];
}

// The grid level of a collection (district, street, community, unit), else null.
// Kind-by-name: switch to the collection's `kind` when the server gives it.
export function gridLevelOf(collectionId) {
  return GRID_LEVELS.find(([, id]) => id === collectionId)?.[0] ?? null;
}

// The grid collections, coarse to fine, with the widths of their codes.
export function gridCollections() {
  return GRID_LEVELS.map(([, id, widths]) => [id, widths]);
}

// Whether a collection holds the live sensors.
// Kind-by-name: switch to the collection's `kind` when the server gives it.
export function isSensors(collectionId) {
  return collectionId === SENSORS;
}
