"""A run's directory: OUT/runs/RUN_ID/ with one Parquet table per stage output and the manifest.

OUT is a local directory or any Hadoop filesystem URI (jobs.storage): tables go through
Spark, the manifest and the index through the session's Hadoop FileSystem.

Every read and write of a table checks its columns and types against `schemas.tables`, so a
stage that gets or produces the wrong shape fails with the difference instead of later.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.errors import SchemaError, StageError, StorageError, errno_text
from jobs.storage import HadoopFiles, join, local_path
from schemas.manifest import RUN_MANIFEST, ManifestError, RunManifest
from schemas.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# What a disk answers when it cannot take the run's files.
DISK_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


def disk_error(text: str) -> str | None:
    """Return "strerror (ERRNO)" when text (an exception's, Spark's Java stack included)
    says a disk was full or read-only, else None."""
    for code in DISK_ERRNOS:
        if os.strerror(code) in text:
            return errno_text(code)
    return None


def new_run_id(now: datetime | None = None) -> str:
    """Return a run id from the UTC time, such as 20261122T104500Z."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunDir:
    """The artefacts of one run: OUT/runs/RUN_ID, OUT a local directory or, with `hadoop`,
    any Hadoop filesystem URI (see jobs.storage)."""

    out: Path | str
    run_id: str
    hadoop: HadoopFiles | None = field(default=None, compare=False, repr=False)

    def path(self, table: Table | str = "") -> str:
        """Return where a table or file of the run is: an absolute local path, or a URI."""
        name = table if isinstance(table, str) else table.name
        if self.hadoop is None:
            root = local_path(self.out).resolve() / "runs" / self.run_id
            return str(root / name) if name else str(root)
        return join(str(self.out), "runs", self.run_id, *([name] if name else []))

    def file_exists(self, name: str) -> bool:
        if self.hadoop is None:
            return Path(self.path(name)).exists()
        return self.hadoop.exists(self.path(name))

    def exists(self, table: Table) -> bool:
        return self.file_exists(f"{table.name}/_SUCCESS")

    def write_table(self, df: DataFrame, table: Table, id_types: dict[str, str]) -> None:
        """Write a DataFrame as the table's Parquet, replacing an earlier attempt."""
        check_schema(df, table, id_types, "written")
        try:
            df.write.mode("overwrite").parquet(self.path(table))
        except Exception as exc:  # Spark buries the disk's answer in a Java stack trace
            cause = disk_error(str(exc))
            if cause is None:
                raise
            raise StorageError(f"cannot write {self.path(table)}: {cause}") from None

    def read_table(self, spark: SparkSession, table: Table, id_types: dict[str, str]) -> DataFrame:
        """Read a table an earlier stage wrote; fail if it is missing or has the wrong shape."""
        if not self.exists(table):
            raise StageError(
                f"{self.path(table)} is missing: run the stage that writes {table.name!r} "
                f"first (or run all stages for run {self.run_id})"
            )
        df = spark.read.parquet(self.path(table))
        check_schema(df, table, id_types, "read")
        return df

    def write_text(self, name: str, text: str) -> None:
        """Write a file of the run whole (temp file, then rename)."""
        if self.hadoop is not None:
            self.hadoop.write_text(self.path(name), text)
            return
        target = Path(self.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_text(text)
        except OSError as exc:  # a write error names no file: name the one it was
            tmp.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        os.replace(tmp, target)

    def read_text(self, name: str) -> str:
        if self.hadoop is None:
            return Path(self.path(name)).read_text()
        return self.hadoop.read_text(self.path(name))

    def write_manifest(self, manifest: RunManifest) -> None:
        """Write manifest.json atomically (temp file, then rename)."""
        self.write_text(RUN_MANIFEST, manifest.to_json())

    def read_manifest(self) -> RunManifest:
        return RunManifest.from_json(self.read_text(RUN_MANIFEST))

    def remove(self) -> None:
        """Delete the run's directory with everything in it."""
        if self.hadoop is None:
            shutil.rmtree(self.path(), ignore_errors=False)
        else:
            self.hadoop.delete(self.path())

    @contextmanager
    def local_dir(self, name: str) -> Iterator[Path]:
        """Yield a local directory to write the run's `name` into; a remote run gets a
        temporary one, copied to the run's location when the block ends without error."""
        if self.hadoop is None:
            yield Path(self.path(name))
            return
        with tempfile.TemporaryDirectory(prefix=f"nightrec-{name}-") as tmp:
            yield Path(tmp) / name
            self.hadoop.put_dir(Path(tmp) / name, self.path(name))


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


def latest_published(run: RunDir, exclude: str | None = None) -> RunDir | None:
    """Return the newest run beside `run` (same OUT) whose manifest says published (corrupt
    ones skipped)."""
    best: tuple[str, RunDir] | None = None
    for run_id in _run_ids(run):
        other = RunDir(run.out, run_id, run.hadoop)
        if run_id == exclude:
            continue
        try:
            manifest = other.read_manifest()
        except (OSError, ManifestError, json.JSONDecodeError) as exc:
            log.warning("ignoring run %s: unreadable manifest (%s)", run_id, exc)
            continue
        if manifest.status == "published" and manifest.finished_at:
            if best is None or manifest.finished_at > best[0]:
                best = (manifest.finished_at, other)
    return best[1] if best else None


def prune_runs(run: RunDir, keep: int, protected: Collection[str]) -> list[str]:
    """Delete the run directories beside `run` beyond the newest `keep` (0: keep all); return
    the ids deleted.

    Only runs that started before `run` are candidates, and never a protected one (a run a
    published version still reads its index from). Runs whose manifest cannot be read are
    left alone for an operator to look at: retention never guesses.
    """
    if keep <= 0:
        return []
    started: list[tuple[str, str]] = []
    for run_id in _run_ids(run):
        try:
            started.append((RunDir(run.out, run_id, run.hadoop).read_manifest().started_at, run_id))
        except (OSError, ManifestError, json.JSONDecodeError) as exc:
            log.warning("retention skips run %s: unreadable manifest (%s)", run_id, exc)
    mine = next((at for at, run_id in started if run_id == run.run_id), None)
    newest_first = sorted(started, reverse=True)
    removed = []
    for at, run_id in newest_first[keep:]:
        if run_id == run.run_id or run_id in protected or (mine is not None and at >= mine):
            continue
        RunDir(run.out, run_id, run.hadoop).remove()
        removed.append(run_id)
    return removed


def _run_ids(run: RunDir) -> list[str]:
    """Return the ids of the runs under OUT/runs that have a manifest."""
    if run.hadoop is None:
        runs = local_path(run.out) / "runs"
        return [p.parent.name for p in sorted(runs.glob(f"*/{RUN_MANIFEST}"))]
    pattern = join(str(run.out), "runs", "*", RUN_MANIFEST)
    return [uri.rstrip("/").split("/")[-2] for uri in run.hadoop.glob(pattern)]
