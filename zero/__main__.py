"""`python -m zero ...` is the `zero` command."""

import sys

from .cli import main

sys.exit(main())
