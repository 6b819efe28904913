"""``python -m newapi_operator`` is the ``newapi`` command."""

import sys

from .cli import main

sys.exit(main())
