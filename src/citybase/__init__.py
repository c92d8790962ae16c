"""citybase: the shared data base of a digital-twin city.

The public surface: `CityBase` (the platform), the declarations (`DatasetSpec`, `CitySpec`) and the
city model (`City`). Everything else is reached through them.
"""

from citybase.errors import CitybaseError, DeclarationError, InputError, NotFound
from citybase.model.city import CitySpec, Level
from citybase.model.dataset import DatasetSpec, Kind
from citybase.places.city import City
from citybase.platform import CityBase

__all__ = [
    "City",
    "CityBase",
    "CitySpec",
    "CitybaseError",
    "DatasetSpec",
    "DeclarationError",
    "InputError",
    "Kind",
    "Level",
    "NotFound",
]
__version__ = "0.1.0"
