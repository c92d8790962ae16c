"""citybase: the shared data base of a digital-twin city.

The public surface: `CityBase` (the platform), the declarations (`DatasetSpec`, `CitySpec`) and the
city model (`City`), the query engine's reader scope and frames. Everything else is reached
through them.
"""

from citybase.errors import CitybaseError, DeclarationError, Forbidden, InputError, NotFound, ScopeError
from citybase.model.city import CitySpec, Level
from citybase.model.dataset import DatasetSpec, Kind
from citybase.places.city import City
from citybase.platform import CityBase
from citybase.query import QueryEngine, ReadScope, to_geodataframe

__all__ = [
    "City",
    "CityBase",
    "CitySpec",
    "CitybaseError",
    "DatasetSpec",
    "DeclarationError",
    "Forbidden",
    "InputError",
    "Kind",
    "Level",
    "NotFound",
    "QueryEngine",
    "ReadScope",
    "ScopeError",
    "to_geodataframe",
]
__version__ = "0.1.0"
