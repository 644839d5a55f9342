"""``python -m retouraanvraag``: the same command as ``retouraanvraag``."""

from __future__ import annotations

import sys

from retouraanvraag.cli import main

if __name__ == "__main__":
    sys.exit(main())
