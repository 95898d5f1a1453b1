"""What a run tells operators: its stage lines (text or JSON) and its metrics for Prometheus.

Metrics are written in the Prometheus text format to a file (for node-exporter's textfile
collector: written atomically, so a scrape never reads half a file) and/or pushed to a
Pushgateway. Labels stay low-cardinality: the run id and version are in one `_info` series.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge

from jobs.config import JobConfig
from schemas.manifest import RunManifest
from schemas.settings import redact_url
from serving.logs import JsonFormatter, json_line

log = logging.getLogger(__name__)
PUSH_JOB = "nightrec_job"


def stage_line(run_id: str, stage: dict, label: str, log_format: str) -> str:
    """Return the progress line of a finished stage (a manifest `stages` entry)."""
    if log_format == "json":
        return json_line(level="INFO", event="stage", run_id=run_id, **stage)
    return (
        f"{label} {stage['stage']:<12} {stage['rows']:>10,} rows {stage['seconds']:7.1f} s  "
        f"{stage['detail']}"
    )


def run_line(manifest: RunManifest) -> str:
    """Return the JSON record of a finished run (the summary of `--log-format json`)."""
    return json_line(
        level="INFO" if manifest.status != "failed" else "ERROR",
        event="run",
        run_id=manifest.run_id,
        version=manifest.version,
        status=manifest.status,
        reason=manifest.reason,
        counts=manifest.counts,
        rejected=manifest.rejected,
        quality=manifest.quality,
        seconds={s["stage"]: s["seconds"] for s in manifest.stages},
    )


def setup_logging(config: JobConfig) -> None:
    """Send the job's own log records to stderr, as JSON lines with the run id in `json`
    format."""
    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter(run_id=config.run_id))
    else:
        handler.setFormatter(logging.Formatter("nightrec: %(levelname)s %(name)s: %(message)s"))
    for name in ("jobs", "schemas", "serving"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if config.verbose else logging.WARNING)


def registry_for(manifest: RunManifest) -> CollectorRegistry:
    """Return a prometheus_client registry holding the run's metrics."""
    reg = CollectorRegistry()
    info = Gauge(
        "nightrec_job_last_run_info",
        "The last run (value 1).",
        ["run_id", "version", "status"],
        registry=reg,
    )
    info.labels(manifest.run_id, manifest.version or "", manifest.status).set(1)
    ok = Gauge("nightrec_job_last_run_success", "1 when the last run published.", registry=reg)
    ok.set(1 if manifest.status in ("published", "completed") else 0)
    finished = Gauge(
        "nightrec_job_last_run_timestamp_seconds", "When the last run ended.", registry=reg
    )
    finished.set(_epoch(manifest.finished_at))
    seconds = Gauge("nightrec_job_stage_seconds", "Seconds per stage.", ["stage"], registry=reg)
    rows = Gauge("nightrec_job_stage_rows", "Rows a stage produced.", ["stage"], registry=reg)
    for stage in manifest.stages:
        seconds.labels(stage["stage"]).set(stage["seconds"])
        rows.labels(stage["stage"]).set(stage["rows"])
    quality = Gauge(
        "nightrec_job_quality", "Holdout quality at k.", ["ranker", "metric", "k"], registry=reg
    )
    for ranker in ("model", "popularity"):
        for metric, value in (manifest.quality or {}).get(ranker, {}).items():
            if isinstance(value, int | float):
                quality.labels(ranker, metric, str(manifest.quality["k"])).set(value)
    return reg


def _epoch(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


def push(url: str, registry: CollectorRegistry) -> None:
    """Push the registry to a Pushgateway; credentials in the URL (https://user:pw@host)
    become a basic-auth header (prometheus_client would take them for part of the host)."""
    from prometheus_client.exposition import basic_auth_handler, default_handler, push_to_gateway

    parts = urlsplit(url)
    handler = default_handler
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        url = urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))

        def handler(url, method, timeout, headers, data):  # type: ignore[no-redef]
            return basic_auth_handler(url, method, timeout, headers, data, user, password)

    push_to_gateway(url, job=PUSH_JOB, registry=registry, timeout=10, handler=handler)


def export_metrics(manifest: RunManifest, config: JobConfig) -> None:
    """Write the run's metrics to the textfile and/or push them; a failure only warns (the
    run's outcome stands)."""
    if not (config.metrics_file or config.pushgateway_url):
        return
    from prometheus_client import write_to_textfile

    reg = registry_for(manifest)
    if config.metrics_file:
        try:
            Path(config.metrics_file).parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(config.metrics_file, reg)
        except OSError as exc:
            log.warning("could not write metrics to %s: %s", config.metrics_file, exc)
    if config.pushgateway_url:
        try:
            push(config.pushgateway_url, reg)
        except OSError as exc:
            where = redact_url(config.pushgateway_url)  # basic-auth credentials stay out of logs
            log.warning("could not push metrics to %s: %s", where, exc)
