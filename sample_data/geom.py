"""Small polygon helpers shared by the layout steps."""

from __future__ import annotations

import numpy as np
import shapely


def merge_small(pieces: list[shapely.Polygon], min_area: float) -> list[shapely.Polygon]:
    """Merge each piece smaller than min_area into the neighbour it shares most border with."""
    stuck = [False] * len(pieces)  # small pieces without a neighbour stay as they are
    while len(pieces) > 1:
        small = [k for k, p in enumerate(pieces) if p.area < min_area and not stuck[k]]
        if not small:
            break
        k = min(small, key=lambda s: pieces[s].area)
        shared = [
            shapely.intersection(pieces[k].boundary, p.boundary).length if j != k else 0.0
            for j, p in enumerate(pieces)
        ]
        j = int(np.argmax(shared))
        merged = shapely.union(pieces[j], pieces[k])
        if shared[j] < min(1.0, 0.2 * pieces[k].area ** 0.5) or merged.geom_type != "Polygon":
            stuck[k] = True
            continue
        pieces[j], stuck[j] = merged, False
        del pieces[k], stuck[k]
    return pieces
