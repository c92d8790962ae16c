"""The operations console: a web page served by `citybase serve` at /console/, with no internet.

It sits on top of every box (it is an app, like the HTTP API): routes.py serves the page and its
assets and the map's data endpoints (/api/v1/map/...); layers.py and tiles.py build map layers
from the city model and the query engine; index.py holds the map's in-memory index of the points
and tracks datasets (heat, tiles and vehicles for open reads); access.py applies the signed-in
department's grants; place.py answers "everything about this place"; figures.py the platform's
live figures. The page itself (static/) is plain ES modules and CSS, with MapLibre GL JS from the
`maplibre` PyPI package.
"""
