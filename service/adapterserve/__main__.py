"""`python -m adapterserve serve | train ...` (the same as the `adapterserve` console script)."""

import sys

from .cli import main

sys.exit(main())
