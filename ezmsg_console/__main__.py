"""``python -m ezmsg_console`` runs the ``ezmsg-console`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
