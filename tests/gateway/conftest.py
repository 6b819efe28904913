"""Fixtures for gateway tests: the demo upstream as a real child process.

- ``demo_upstream`` (function scope): one shared instance for the session (name ``shared``, any
  key, any model), reset before each test (no rules, empty request log). Cheap.
- ``start_demo_upstream(**opts)`` (function scope): a factory for tests that need their own
  instances (expected keys, a model list, a name to tell two apart, a base behaviour); each call
  starts a new process on a free port, all are stopped when the test ends. Options are those of
  :meth:`DemoUpstreamProcess.spawn`: ``name``, ``api_keys``, ``models``, ``record``, ``behavior``.

Both give a :class:`newapi_gateway.demo_upstream.DemoUpstreamProcess`: ``.url``,
``.openai_base_url`` (``…/v1``), ``.anthropic_base_url``, ``.base_url(prefix)``, ``.name``,
``.pid`` and the control calls ``.set_behavior(...)``, ``.fail_next(k, status)``,
``.clear_behavior()``, ``.requests()``, ``.last_request()``, ``.wait_for_requests(n)``,
``.clear_requests()``, ``.reset()``, ``.info()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess

StartDemoUpstream = Callable[..., DemoUpstreamProcess]

_names = itertools.count(1)


@pytest.fixture(scope="session")
def _shared_demo_upstream() -> Iterator[DemoUpstreamProcess]:
    upstream = DemoUpstreamProcess.spawn(name="shared")
    yield upstream
    upstream.stop()


@pytest.fixture
def demo_upstream(_shared_demo_upstream: DemoUpstreamProcess) -> DemoUpstreamProcess:
    """The session's demo upstream, reset (no rules, empty request log)."""
    upstream = _shared_demo_upstream
    if not upstream.alive():
        pytest.fail(
            f"the shared demo upstream (pid {upstream.pid}) died (exit {upstream.proc.returncode}); "
            f"its stderr:\n{upstream.stderr_text()}"
        )
    upstream.reset()
    return upstream


@pytest.fixture
def start_demo_upstream() -> Iterator[StartDemoUpstream]:
    """Factory: ``start_demo_upstream(name="b", api_keys=["sk-b"], models=["m"])`` -> a new process."""
    started: list[DemoUpstreamProcess] = []

    def start(**opts: Any) -> DemoUpstreamProcess:
        opts.setdefault("name", f"demo{next(_names)}")
        upstream = DemoUpstreamProcess.spawn(**opts)
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()
