"""Zip the project's packages for spark-submit --py-files: python scripts/build_pyfiles.py OUT.

Only the sources and package data of jobs/, schemas/ and serving/ (no caches); the zip's
root holds the packages, so `import jobs` works with the zip on sys.path. The job's entry file
is copied beside the zip as main.py: spark-submit puts the entry file's directory first on
sys.path, and jobs/ itself must not be there (its modules would shadow top-level names).
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jobs", "schemas", "serving")
SUFFIXES = (".py", ".properties")


def build(target: Path) -> Path:
    """Write the zip to target and return it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in PACKAGES:
            for path in sorted((ROOT / package).rglob("*")):
                if path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                    zf.write(path, path.relative_to(ROOT).as_posix())
    shutil.copyfile(ROOT / "jobs" / "__main__.py", target.with_name("main.py"))
    return target


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "dist/nightrec.zip")))
