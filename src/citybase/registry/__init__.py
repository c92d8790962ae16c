"""Who is who: the departments, their information systems, and the API keys they act with.

A key acts for one department (the tenant) and optionally one of its systems; the platform's
operator is a department too, whose keys have the `admin` role.
"""

from citybase.registry.keys import Principal, Role
from citybase.registry.registry import Department, IssuedKey, KeyInfo, Registry, System

__all__ = ["Department", "IssuedKey", "KeyInfo", "Principal", "Registry", "Role", "System"]
