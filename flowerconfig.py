"""Flower's options (tornado executes this file at start: ``--conf=flowerconfig.py``).

Address, port and credentials come from fleet's settings (``FLEET_FLOWER_ADDRESS``,
``FLEET_FLOWER_PORT``, ``FLEET_FLOWER_USER``/``FLEET_FLOWER_PASSWORD``, see fleet.app.flower),
so the password never appears on a command line. Only names of Flower options may be
public here; a ``--port``/``--address`` on the command line still wins over these.
"""

import sys as _sys

from fleet.app import flower as _flower
from fleet.errors import FleetError as _FleetError

try:
    address, port, basic_auth = _flower.options()
except _FleetError as _exc:
    print(f"error: {_exc}", file=_sys.stderr)
    raise SystemExit(2) from None
