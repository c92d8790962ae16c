from __future__ import annotations

from pathlib import Path

import pytest

from citybase.testing import shared_data


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared/data; tests that need real third-party data skip where it is absent."""
    p = shared_data()
    if p is None:
        pytest.skip("../shared/data is absent: this test needs the real third-party data")
    return p
