"""Built-in readers, registered through the same `register` that plugins use."""

from citybase.gateway.readers import delimited, geolife, gpx, ogr, osm, parquet  # noqa: F401
