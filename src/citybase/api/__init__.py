"""The HTTP API: a thin shell over the Python API (`CityBase`) for departments and applications.

Routes translate requests and responses and nothing more; every rule (who may do what, what a row
must look like, what a reader may see) lives in the boxes below.
"""

from citybase.api.app import create_app
from citybase.api.settings import Settings

__all__ = ["Settings", "create_app"]
