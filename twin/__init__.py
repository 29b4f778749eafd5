"""citytwin core: settings, database, embedded PostGIS, migrations, CRS helpers, errors."""
