"""`python -m musicfw.cli`: the `musicfw` command."""

import sys

from musicfw.cli import main

sys.exit(main())
