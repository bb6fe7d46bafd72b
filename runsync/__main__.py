"""``python -m runsync``: the same command line as ``runsync`` (for environments without the script on PATH)."""

import sys

from .cli import main

sys.exit(main())
