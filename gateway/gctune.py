"""Garbage-collector settings for a long-running gateway process.

Each request allocates a few hundred short-lived objects (contexts, futures, dicts); with the
interpreter's default young-generation threshold (700 allocations) the collector runs every
request or two and walks every young container each time. After start-up the gateway moves what
it allocated so far (modules, routing table, caches) to the permanent generation (``gc.freeze``),
so full collections do not walk it again, and collects the young generation every
``YOUNG_THRESHOLD`` allocations instead. Nothing is leaked by this: reference cycles are still
collected, only in larger, rarer passes. ``NEWAPI_GC_YOUNG_THRESHOLD=0`` keeps the defaults.
"""

from __future__ import annotations

import gc
import os

#: Young-generation threshold after start-up (allocations minus deallocations of containers).
YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Freeze what start-up allocated and raise the young-generation threshold (see the module doc)."""
    raw = os.environ.get("NEWAPI_GC_YOUNG_THRESHOLD", "")
    young = int(raw) if raw.strip().isdigit() else YOUNG_THRESHOLD
    if young <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
