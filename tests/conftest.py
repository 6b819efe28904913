"""Fixtures shared by the whole suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The ``newapi`` console script of the interpreter running the tests (works without an activated venv).
NEWAPI = str(Path(sys.executable).parent / "newapi")


@pytest.fixture(scope="session")
def newapi_bin() -> str:
    """Path of the installed ``newapi`` console script."""
    if not Path(NEWAPI).exists():
        pytest.fail(f"the newapi console script is not installed next to {sys.executable}; pip install the project")
    return NEWAPI


# Throwaway PostgreSQL and Redis servers (tests/services.py): postgres_server, pg_dsn, redis_server,
# redis_url, and postgres_factory/redis_factory for tests that stop and restart their own servers.
from tests.services import (  # noqa: E402, F401
    pg_dsn,
    postgres_factory,
    postgres_server,
    redis_factory,
    redis_server,
    redis_url,
)
