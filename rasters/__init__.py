"""Remote sensing: the scene catalog, raster tiles with band math, zonal statistics and
change detection."""
