"""`nightrec serve`: run the API under gunicorn (gthread workers) with the configured settings.

    nightrec serve [--out DIR] [--redis-url URL] [--host HOST] [--port PORT]
                   [--workers W] [--threads T]

Every setting also has a NIGHTREC_* variable (see `serving.config.SETTINGS`). Without a
Redis URL the private redis-server under --out is used (started when not running), as
`nightrec run` does.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from serving.balance import BalancedThreadWorker, ConnectionBoard, seat_workers
from serving.config import ConfigError, ServeConfig, load_config
from serving.logs import JsonFormatter

FLAGS = ("out", "redis_url", "host", "port", "workers", "threads")
log = logging.getLogger("nightrec.serving")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `serve` flags to a parser (values stay strings; the config parses them)."""
    parser.add_argument("--out", help="the job's artefact directory (default ./var)")
    parser.add_argument("--redis-url", dest="redis_url", help="redis:// or rediss:// URL")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", help="TCP port (default 8080)")
    parser.add_argument("--workers", help="worker processes (default 2)")
    parser.add_argument("--threads", help="threads per worker (default 4)")


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Parse the `serve` flags, build the config and run gunicorn; return the exit status."""
    parser = argparse.ArgumentParser(prog="nightrec serve", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = resolve_config(load_config({k: getattr(args, k) for k in FLAGS}))
    except (ConfigError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"nightrec serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    owned = None
    if not config.metrics_dir:
        owned = tempfile.mkdtemp(prefix="nightrec-metrics-")
        config = config.replace(metrics_dir=owned)
    for stale in Path(config.metrics_dir).glob("*.db"):  # files of an earlier server
        stale.unlink()
    # prometheus_client picks its multiprocess mode from this variable when first imported,
    # which happens in the workers (the app is not preloaded).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = config.metrics_dir
    try:
        ApiServer(config).run()
    finally:
        if owned:
            shutil.rmtree(owned, ignore_errors=True)
    return 0


def resolve_config(config: ServeConfig) -> ServeConfig:
    """Fill in the Redis URL: the private redis-server under `out` when none is configured."""
    if config.redis_url:
        return config
    from serving.local_redis import ensure_local_redis

    return config.replace(redis_url=ensure_local_redis(Path(config.out)))


def setup_logging(config: ServeConfig) -> None:
    """Log nightrec's lines to stderr (JSON lines in `json` format). Access lines, JSON
    objects with the version that answered, go to stdout (`ApiServer.load`)."""
    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("[%(process)d] %(levelname)s %(name)s: %(message)s"))
    app_log = logging.getLogger("nightrec")
    app_log.addHandler(handler)
    app_log.setLevel(logging.INFO)


class ApiServer(BaseApplication):  # type: ignore[misc]
    """gunicorn running `serving.app.create_app(config)` in every worker."""

    def __init__(self, config: ServeConfig) -> None:
        self.serve_config = config
        super().__init__()

    def load_config(self) -> None:
        for name, value in gunicorn_settings(self.serve_config).items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        from serving.app import create_app

        access_log = sys.stdout.buffer if self.serve_config.access_log else None
        app = create_app(self.serve_config, access_log=access_log)
        freeze_heap()
        return app


def freeze_heap() -> None:
    """Take every object the worker holds once it is ready out of the cycle collector's
    full passes (`gc.freeze`).

    A ready worker holds about 430,000 tracked objects, nearly all of them modules that
    scann and the encoder import (TensorFlow, torch). A full collection walks all of them
    with the GIL held: 230-250 ms in a worker under load, during which none of its threads
    answers. One came within the first seconds of traffic of every worker, and then
    whenever 25% more objects had outlived the younger generations. Frozen objects are still
    freed by reference counting; only a cycle among them would never be collected, and a
    version's objects form none (`tests/serving/test_switch.py`), so a version switched
    from is freed as before.
    """
    gc.collect()
    gc.freeze()


def gunicorn_settings(config: ServeConfig) -> Mapping[str, Any]:
    """Return gunicorn's settings for `config`.

    With several workers they are gthread workers that share out the keep-alive
    connections evenly (`serving.balance`), through a board made here, in the master.
    """
    host = f"[{config.host}]" if ":" in config.host else config.host
    workers: dict[str, Any] = {"worker_class": "gthread"}
    if config.workers > 1:  # one board per server, made here in the master before any fork
        board = ConnectionBoard(2 * config.workers + 2)  # old and new workers of a reload
        workers = {"worker_class": BalancedThreadWorker, "pre_fork": seat_workers(board)}
    return {
        "bind": [f"{host}:{config.port}"],
        "workers": config.workers,
        "threads": config.threads,
        "timeout": config.worker_timeout,  # loading a version (TensorFlow, torch) takes seconds
        "graceful_timeout": 10,
        "keepalive": 5,
        # gunicorn's largest request line: a 500-character non-ASCII query is 4.5 kB encoded
        "limit_request_line": 8190,
        "proc_name": "nightrec-serve",
        "control_socket_disable": True,  # one fixed socket path would clash between servers
        "child_exit": _forget_worker(config.metrics_dir),
        **workers,
    }


def _forget_worker(metrics_dir: str) -> Any:
    def child_exit(server: Any, worker: Any) -> None:
        if metrics_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid, metrics_dir)

    return child_exit
