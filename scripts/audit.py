"""Audit the pinned dependencies for known vulnerabilities with pip-audit (make audit).

Audits every pin of constraints.txt (the job and the tests) and requirements-api.txt (the API
image) against the vulnerability service pip-audit uses (PyPI's advisories by default). Exit
status: 1 when any pinned version has a known vulnerability (each one is listed with its fix
versions), 0 otherwise. When the service cannot be reached (a machine whose package index is a
mirror without PyPI's JSON API, or no network) nothing can be audited: that is said on one
line, and it is a failure only with NIGHTREC_AUDIT_REQUIRED=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PINNED = ("constraints.txt", "requirements-api.txt")


def pins() -> list[str]:
    """Return every `name==version` line of the pinned files, once each."""
    lines = set()
    for name in PINNED:
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                if "==" not in line:
                    raise SystemExit(f"audit: {name}: {line!r} is not pinned with ==")
                lines.add(line)
    return sorted(lines, key=str.lower)


def run_audit(requirements: list[str]) -> dict:
    """Run pip-audit over the pins (no resolution: they are the whole set) and return its JSON."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as fh:
        fh.write("\n".join(requirements) + "\n")
        fh.flush()
        command = [sys.executable, "-m", "pip_audit", "-r", fh.name, "--no-deps"]
        command += ["--disable-pip", "-f", "json", "--progress-spinner", "off"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if not done.stdout.strip():
        raise SystemExit(f"audit: pip-audit failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def main() -> int:
    report = run_audit(pins())
    deps = report["dependencies"]
    skipped = [d for d in deps if "skip_reason" in d]
    found = [(d, v) for d in deps for v in d.get("vulns", [])]
    for dep, vuln in found:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
        print(f"audit: {dep['name']}=={dep['version']}: {vuln['id']} (fixed in: {fixes})")
    audited = len(deps) - len(skipped)
    print(
        f"audit: {audited} of {len(deps)} pinned packages audited, {len(found)} known "
        f"vulnerabilities" + (f"; {len(skipped)} could not be audited" if skipped else "")
    )
    if found:
        return 1
    if skipped and audited == 0:
        print("audit: the vulnerability service could not be reached from this machine")
        return 1 if os.environ.get("NIGHTREC_AUDIT_REQUIRED") == "1" else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
