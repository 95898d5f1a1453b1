"""`python -m jobs` behaves as `nightrec`; so does `spark-submit main.py` (this file, copied
beside the project zip by scripts/build_pyfiles.py)."""

import sys

from jobs.cli import main

sys.exit(main())
