"""`python -m ragtune`: the same as the `ragtune` command."""

from __future__ import annotations

import sys

from ragtune.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
