-- Low points of drainage networks (排水 PS): inlets and manholes on a run (two pipes or more)
-- whose ground is lower than the ground at every node they share a pipe with. Surface water
-- gathers there in a storm; the flood control map shows them. A dead-end inlet a little below
-- its manhole is a gutter built that way, not a depression, and is left out. depression_m is
-- how far below the lowest neighbour the ground lies.
-- The neighbours are found per node (LATERAL), so a tile's box filter reaches the node scan.
CREATE INDEX pipe_segments_from ON twin.pipe_segments (network, from_node)
    WHERE deleted_at IS NULL;
CREATE INDEX pipe_segments_to ON twin.pipe_segments (network, to_node)
    WHERE deleted_at IS NULL;

CREATE VIEW twin.drainage_low_points AS
    SELECT n.id AS fid, n.network, n.node_id, n.kind, n.ground_elev_m,
           nb.lowest - n.ground_elev_m AS depression_m, n.unit_grid, n.geom
    FROM twin.pipe_nodes n
    JOIN twin.pipe_networks w ON w.name = n.network AND w.utility = 'PS'
    CROSS JOIN LATERAL (
        SELECT min(m.ground_elev_m) AS lowest, count(*) AS neighbours
        FROM (SELECT s.to_node AS other FROM twin.pipe_segments s
              WHERE s.network = n.network AND s.from_node = n.node_id AND s.deleted_at IS NULL
              UNION ALL
              SELECT s.from_node FROM twin.pipe_segments s
              WHERE s.network = n.network AND s.to_node = n.node_id AND s.deleted_at IS NULL
             ) AS o
        JOIN twin.pipe_nodes m
          ON m.network = n.network AND m.node_id = o.other AND m.deleted_at IS NULL
    ) AS nb
    WHERE n.deleted_at IS NULL AND n.kind IN ('inlet', 'manhole')
      AND nb.neighbours >= 2 AND n.ground_elev_m < nb.lowest;
