"""`python -m adapterserve.training train ...` (the same as `adapterserve train ...`)."""

import sys

from .cli import main

sys.exit(main())
