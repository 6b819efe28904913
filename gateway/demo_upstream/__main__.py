"""``python -m newapi_gateway.demo_upstream``: run the demo upstream as a process."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
