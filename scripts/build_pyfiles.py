"""Zip the project's packages for spark-submit --py-files: python scripts/build_pyfiles.py OUT.

Only the sources and package data of jobs/, schemas/ and serving/ (no caches); the zip's
root holds the packages, so `import jobs` works with the zip on sys.path.
"""

from __future__ import annotations

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
    return target


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "dist/nightrec.zip")))
