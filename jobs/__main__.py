"""`python -m jobs` (and spark-submit jobs/__main__.py) behaves as `nightrec`."""

import sys

from jobs.cli import main

sys.exit(main())
