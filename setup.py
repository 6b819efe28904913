"""Build step beside pyproject.toml: compile the full path's metering modules with mypyc.

The per-request work of key limits, credit holds and debits (``newapi_gateway.limits``,
``.metering``, ``.pricing``) is plain typed Python; mypyc (part of mypy) turns exactly these
modules into C extensions, which run them several times faster with the same behaviour (they
are mypy-clean; mypyc also enforces their annotations at run time). Everything else, the
pass-through proxy included, stays interpreted. The ``.py`` files ship beside the extensions.

``NEWAPI_PURE_PYTHON=1`` builds without compiling (needs no C compiler); editable installs
(``pip install -e .``) never compile, so an edited module always takes effect.
docs/metering.md ("Compiled hot path") has the figures.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup

#: The modules compiled (paths under gateway/, without ``.py``). A class defined here cannot be
#: subclassed by interpreted code, so every ``Limiter`` implementation is in the list.
COMPILED = (
    "pricing",
    "limits/base",
    "limits/local",
    "limits/redis",
    "limits/resp",
    "metering/admission",
    "metering/billing",
    "metering/leases",
    "metering/meter",
    "metering/resolver",
    "store/keycache",
    "store/models",
)

ROOT = Path(__file__).resolve().parent


def compiled_extensions() -> list[Extension]:
    if os.environ.get("NEWAPI_PURE_PYTHON") == "1" or "editable_wheel" in sys.argv:
        return []
    from mypyc.build import mypycify

    # mypy names a module after its folder: give it the import name (gateway/ is newapi_gateway).
    src = ROOT / "build" / "mypyc-src"
    src.mkdir(parents=True, exist_ok=True)
    link = src / "newapi_gateway"
    if link.is_symlink() or link.exists():
        link.unlink()  # made by an earlier build, maybe of a clone elsewhere
    link.symlink_to(ROOT / "gateway", target_is_directory=True)
    paths = [str((link / f"{name}.py").relative_to(ROOT)) for name in COMPILED]
    # The build environment has mypy but not the runtime dependencies: their types are Any here.
    flags = ["--config-file", str((ROOT / "hack" / "mypyc.ini").relative_to(ROOT))]
    # group_name: the shared runtime library is the top-level module ``newapi_gateway__mypyc``
    extensions: list[Extension] = mypycify([*flags, *paths], opt_level="3", group_name="newapi_gateway")
    return extensions


setup(ext_modules=compiled_extensions())
