"""``python -m v2py``."""

from __future__ import annotations

import sys

from v2py.cli import main

sys.exit(main())
