"""`python -m foundry_magics.demo`: the old spelling of `python -m foundry_magics.notebook.demo`."""

from __future__ import annotations

import sys

from foundry_magics.notebook.demo import main

if __name__ == "__main__":
    sys.exit(main())
