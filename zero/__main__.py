"""`python -m zero ...` is the `zero` command."""

import sys

from zero.cli import main

sys.exit(main())
