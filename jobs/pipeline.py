"""The ordered registry of stages and the run that drives them.

A run goes through the selected stages in order, records rows and seconds per stage in the
manifest (written after every stage, so a crash leaves a record), and ends `published` once
the publish stage has switched the Redis pointer, `completed` when publish was not asked for,
or `failed` with a one-line reason. The previous version stays current on any failure.
"""

from __future__ import annotations

import sys
import time
import traceback
from concurrent.futures import Future
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from jobs import (
    build_index,
    embed_items,
    evaluate_holdout,
    ingest,
    publish,
    score_users,
    train_cf,
)
from jobs.config import JobConfig
from jobs.context import Context, Stage
from jobs.errors import JobError, errno_text
from jobs.observe import stage_line
from jobs.run_store import RunDir, new_run_id, utc_now
from jobs.storage import HadoopFiles, is_local, local_path
from schemas.manifest import RUN_MANIFEST, ManifestError, RunManifest
from schemas.settings import redact_url

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGES: tuple[Stage, ...] = (
    ingest.STAGE,
    embed_items.STAGE,
    evaluate_holdout.STAGE,
    train_cf.STAGE,
    score_users.STAGE,
    build_index.STAGE,
    publish.STAGE,
)


class RunFailed(JobError):
    """The run failed; the message is the one-line reason, the manifest has the details."""

    def __init__(self, reason: str, manifest: RunManifest):
        super().__init__(reason)
        self.manifest = manifest


def start_manifest(run: RunDir, config: JobConfig) -> RunManifest:
    """Return the manifest to fill: a new one, or the earlier one when resuming some stages."""
    manifest = RunManifest(run_id=run.run_id)
    if config.stages[0] != STAGES[0].name and run.file_exists(RUN_MANIFEST):
        try:
            manifest = run.read_manifest()
        except ManifestError:
            pass  # a corrupt earlier record: start a fresh one
    manifest.status, manifest.reason, manifest.finished_at = "running", None, None
    manifest.started_at = utc_now()
    manifest.params["config"] = config.public()
    manifest.stages = [s for s in manifest.stages if s["stage"] not in config.stages]
    return manifest


def run_job(
    config: JobConfig,
    spark: SparkSession | Future | None = None,
    redis_url: str | None = None,
    progress: TextIO = sys.stdout,
) -> RunManifest:
    """Run the configured stages; return the final manifest or raise RunFailed."""
    run_id = config.run_id or new_run_id()
    hadoop = None
    if not is_local(config.out):  # the run's own files go through Spark's Hadoop FileSystem
        try:
            spark = _session(spark, config)
        except Exception as exc:
            raise RunFailed(_reason(exc, "spark"), RunManifest(run_id, status="failed")) from exc
        hadoop = HadoopFiles(spark)
    run = RunDir(config.out if hadoop else local_path(config.out), run_id, hadoop)
    manifest = start_manifest(run, config)
    selected = [s for s in STAGES if s.name in config.stages]
    stage_name = "setup"
    try:
        run.write_manifest(manifest)  # a full or read-only OUT fails here, in one line
        if "publish" in config.stages and not (redis_url or config.redis_url):
            redis_url = _private_redis(run)
        stage_name = "spark"
        spark = _session(spark, config)
        ctx = Context(config, spark, run, manifest, redis_url or config.redis_url)
        if ctx.redis_url:
            manifest.params["redis_url"] = redact_url(ctx.redis_url)
        for number, stage in enumerate(selected, start=1):
            stage_name = stage.name
            _run_stage(ctx, stage, f"[{number}/{len(selected)}]", progress)
    except Exception as exc:  # every failure ends as a recorded, one-line reason
        reason = _reason(exc, stage_name)
        if not isinstance(exc, (JobError, OSError)):
            with suppress(OSError):  # the disk may be what failed
                run.write_text("error.log", traceback.format_exc())
                reason += f" (traceback in {run.path('error.log')})"
        with suppress(OSError):
            _finish(run, manifest, "failed", reason)
        raise RunFailed(reason, manifest) from exc
    _finish(run, manifest, "published" if manifest.version else "completed", None)
    return manifest


def _session(spark: SparkSession | Future | None, config: JobConfig) -> SparkSession:
    """Return the SparkSession: the given one, the CLI's background start, or a new one."""
    if spark is None:
        from jobs.spark import build_session

        return build_session(config)
    return spark.result() if isinstance(spark, Future) else spark


def _private_redis(run: RunDir) -> str:
    """Return the URL of the private redis-server kept under a local OUT."""
    if run.hadoop is not None:
        raise JobError(
            f"a private redis-server needs a local --out, not {run.out}: give --redis-url "
            "(or NIGHTREC_REDIS_URL)"
        )
    from serving.local_redis import ensure_local_redis

    return ensure_local_redis(Path(run.out))


def _run_stage(ctx: Context, stage: Stage, label: str, progress: TextIO) -> None:
    if progress.isatty():
        progress.write(f"{label} {stage.name:<12} ...\r")
        progress.flush()
    start = time.perf_counter()
    result = stage.body(ctx)
    seconds = time.perf_counter() - start
    record = {
        "stage": stage.name,
        "rows": result.rows,
        "seconds": round(seconds, 2),
        "detail": result.detail,
    }
    ctx.manifest.stages.append(record)
    ctx.run.write_manifest(ctx.manifest)
    progress.write(stage_line(ctx.run.run_id, record, label, ctx.config.log_format) + "\n")
    progress.flush()


def _reason(exc: Exception, stage: str) -> str:
    if isinstance(exc, JobError):
        return f"{stage}: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{stage}: {errno_text(exc.errno, exc.strerror)}{where}"
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    return f"{stage}: unexpected {type(exc).__name__}: {first[:300]}"


def _finish(run: RunDir, manifest: RunManifest, status: str, reason: str | None) -> None:
    manifest.status, manifest.reason, manifest.finished_at = status, reason, utc_now()
    run.write_manifest(manifest)
