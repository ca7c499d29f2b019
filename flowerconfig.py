"""Flower's options (tornado executes this file at start: ``--conf=flowerconfig.py``).

Credentials come from ``FLEET_FLOWER_USER``/``FLEET_FLOWER_PASSWORD`` (see fleet.app.flower),
so they never appear on a command line. Only names of Flower options may be public here.
"""

import sys as _sys

from fleet.app import flower as _flower
from fleet.errors import ConfigError as _ConfigError

try:
    basic_auth = _flower.basic_auth()
except _ConfigError as _exc:
    print(f"error: {_exc}", file=_sys.stderr)
    raise SystemExit(2) from None
