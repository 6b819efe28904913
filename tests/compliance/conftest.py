"""Fixtures for the end-to-end compliance tests: the demo upstream (shared with tests/gateway), the
throwaway PostgreSQL/Redis servers (tests/services.py, through tests/conftest.py) and the stack
helpers of :mod:`tests.compliance.stack`."""

from __future__ import annotations

import itertools

import pytest

from tests.gateway.conftest import _shared_demo_upstream, demo_upstream, start_demo_upstream  # noqa: F401

_names = itertools.count(1)


@pytest.fixture
def customer_name(request: pytest.FixtureRequest) -> str:
    """A customer external id unique to this test."""
    return f"{request.node.originalname}-{next(_names)}"

