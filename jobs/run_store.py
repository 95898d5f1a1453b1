"""A run's directory: OUT/runs/RUN_ID/ with one Parquet table per stage output and the manifest.

Every read and write of a table checks its columns and types against `schemas.tables`, so a
stage that gets or produces the wrong shape fails with the difference instead of later.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.errors import SchemaError, StageError
from schemas.manifest import RUN_MANIFEST, ManifestError, RunManifest
from schemas.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def new_run_id(now: datetime | None = None) -> str:
    """Return a run id from the UTC time, such as 20261122T104500Z."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunDir:
    """The artefacts of one run and the id types its tables use."""

    out: Path
    run_id: str

    @property
    def root(self) -> Path:
        return self.out / "runs" / self.run_id

    def path(self, table: Table | str) -> Path:
        return self.root / (table if isinstance(table, str) else table.name)

    def exists(self, table: Table) -> bool:
        return (self.path(table) / "_SUCCESS").exists()

    def write_table(self, df: DataFrame, table: Table, id_types: dict[str, str]) -> None:
        """Write a DataFrame as the table's Parquet, replacing an earlier attempt."""
        check_schema(df, table, id_types, "written")
        df.write.mode("overwrite").parquet(str(self.path(table)))

    def read_table(self, spark: SparkSession, table: Table, id_types: dict[str, str]) -> DataFrame:
        """Read a table an earlier stage wrote; fail if it is missing or has the wrong shape."""
        if not self.exists(table):
            raise StageError(
                f"{self.path(table)} is missing: run the stage that writes {table.name!r} "
                f"first (or run all stages for run {self.run_id})"
            )
        df = spark.read.parquet(str(self.path(table)))
        check_schema(df, table, id_types, "read")
        return df

    def write_manifest(self, manifest: RunManifest) -> None:
        """Write manifest.json atomically (temp file, then rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{RUN_MANIFEST}.tmp"
        tmp.write_text(manifest.to_json())
        os.replace(tmp, self.root / RUN_MANIFEST)

    def read_manifest(self) -> RunManifest:
        return RunManifest.from_json((self.root / RUN_MANIFEST).read_text())


def expected_columns(table: Table, id_types: dict[str, str]) -> list[tuple[str, str]]:
    ddl = table.ddl(id_types.get("user_id", "bigint"), id_types.get("item_id", "bigint"))
    return [tuple(part.strip().split(" ", 1)) for part in ddl.split(", ")]  # type: ignore[misc]


def check_schema(df: DataFrame, table: Table, id_types: dict[str, str], verb: str) -> None:
    """Raise SchemaError naming the difference when df's columns differ from the table's."""
    expected = expected_columns(table, id_types)
    found = [(name, typ) for name, typ in df.dtypes]
    if found != expected:
        missing = [c for c in expected if c not in found]
        extra = [c for c in found if c not in expected]
        raise SchemaError(
            f"table {table.name!r} {verb} with the wrong schema: expected "
            f"{_cols(expected)}, found {_cols(found)} "
            f"(missing {_cols(missing) or 'none'}; unexpected {_cols(extra) or 'none'})"
        )


def _cols(cols: list[tuple[str, str]]) -> str:
    return ", ".join(f"{n} {t}" for n, t in cols)


def latest_published(out: Path, exclude: str | None = None) -> RunDir | None:
    """Return the newest run under OUT whose manifest says published (corrupt ones skipped)."""
    best: tuple[str, RunDir] | None = None
    for manifest_path in sorted((out / "runs").glob(f"*/{RUN_MANIFEST}")):
        run = RunDir(out, manifest_path.parent.name)
        if run.run_id == exclude:
            continue
        try:
            manifest = run.read_manifest()
        except (OSError, ManifestError, json.JSONDecodeError) as exc:
            log.warning("ignoring run %s: unreadable manifest (%s)", run.run_id, exc)
            continue
        if manifest.status == "published" and manifest.finished_at:
            if best is None or manifest.finished_at > best[0]:
                best = (manifest.finished_at, run)
    return best[1] if best else None
