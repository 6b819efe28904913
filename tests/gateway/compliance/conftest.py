"""Fixtures for the compliance tests: the shipped policy library, routing tables, a GeoIP database
built on the fly (:mod:`.mmdb_writer`), and real OpenAI/Anthropic SDK clients that parse our error
bodies in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from newapi_gateway.compliance.aup_policy import PolicyLibrary, load_policy_library

from .builders import GEOIP_NETWORKS
from .mmdb_writer import write_mmdb


@pytest.fixture(scope="session")
def library() -> PolicyLibrary:
    """The shipped AUP policies."""
    return load_policy_library()


@pytest.fixture(scope="session")
def geoip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A City-style MaxMind DB with :data:`GEOIP_NETWORKS`."""
    return write_mmdb(tmp_path_factory.mktemp("geoip") / "test-city.mmdb", GEOIP_NETWORKS)


Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture
def openai_client() -> Iterator[Callable[[Handler], openai.OpenAI]]:
    """Real ``openai.OpenAI`` clients whose HTTP goes to ``handler`` in memory."""
    clients: list[openai.OpenAI] = []

    def make(handler: Handler) -> openai.OpenAI:
        client = openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1",
                               http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def anthropic_client() -> Iterator[Callable[[Handler], anthropic.Anthropic]]:
    """Real ``anthropic.Anthropic`` clients whose HTTP goes to ``handler`` in memory."""
    clients: list[anthropic.Anthropic] = []

    def make(handler: Handler) -> anthropic.Anthropic:
        client = anthropic.Anthropic(api_key="sk-ant-test", base_url="http://gateway.test",
                                     http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
                                     max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
