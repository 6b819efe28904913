"""``newapi gateway --geoip-db``: without a trusted proxy, the client's own address is looked up in a
MaxMind-format database (built on the fly) when the routing table names none; a table's own
``geo.geoipDatabase`` wins."""

from __future__ import annotations

import copy
from pathlib import Path

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from tests.gateway.compliance.mmdb_writer import city_record, write_mmdb
from tests.gateway.metering.metered import sqlite_backend

from .stack import COMMERCIAL, routes_doc, running_stack, signup


def test_geoip_database_option(tmp_path: Path, demo_upstream: DemoUpstreamProcess) -> None:
    crimea = write_mmdb(tmp_path / "crimea.mmdb", {"127.0.0.0/8": city_record("UA", "43")})
    germany = write_mmdb(tmp_path / "germany.mmdb", {"127.0.0.0/8": city_record("DE", "BE")})
    doc = routes_doc(demo_upstream.url, {"geo": {"trustedProxyCIDRs": []}})
    with running_stack(tmp_path / "gw", demo_upstream.url, sqlite_backend(tmp_path / "gw" / "state"),
                       "--geoip-db", str(crimea), routes=doc) as stack:
        key = signup(stack.admin, "geoip-customer")
        refused = stack.chat(key, COMMERCIAL, country="DE")  # the header is not trusted: the database decides
        assert refused.status_code == 451
        assert "(RU-occupied-UA)" in refused.json()["error"]["message"]
        row = stack.audit_row(refused.headers["x-request-id"])
        assert (row["country"], row["decisions"]["geoSource"], row["decisions"]["subdivision"]) == (
            "UA", "geoip", "UA-43")
        assert stack.admin.ok("GET", "/compliance")["policy"]["geo"]["geoipDatabase"] is True
        own = copy.deepcopy(doc)
        own["policy"]["geo"]["geoipDatabase"] = str(germany)
        stack.write_routes(own)
        assert stack.chat(key, COMMERCIAL, country=None).status_code == 200
    assert demo_upstream.requests(), "the request from Germany was served"
