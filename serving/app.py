"""The Flask application factory (flaskr style) and the accessors the blueprints use.

`create_app(config)` builds the long-lived objects once (Redis client, list store, query
encoder, metrics, version manager), keeps them in `app.extensions["nightrec"]`, registers one
blueprint per resource and the JSON error handlers, and loads the published version before
it returns, so a worker answers from its first request.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, current_app, g, request

from schemas.redis_layout import Keys
from serving.assets import SearchAssets
from serving.config import ConfigError, ServeConfig, load_config
from serving.errors import ApiError, register_error_handlers, unavailable
from serving.metrics import Metrics
from serving.query_encoder import QueryEncoder
from serving.redis_client import connect
from serving.store import ListStore
from serving.versions import Version, VersionManager, load_version

access_log = logging.getLogger("nightrec.access")


@dataclass(frozen=True)
class Services:
    """The long-lived objects of one app."""

    config: ServeConfig
    store: ListStore
    versions: VersionManager
    encoder: QueryEncoder
    metrics: Metrics


def create_app(config: ServeConfig | None = None, *, background: bool = True) -> Flask:
    """Build the API.

    Args:
        config: the settings; None reads them from NIGHTREC_* variables (and, with no Redis
            URL there, starts or reuses the private redis-server under `out`).
        background: load new versions in a thread; False loads them within the request that
            notices the pointer change (deterministic, for tests).
    """
    config = config or load_config()
    if config.redis_url is None:
        from serving.local_redis import ensure_local_redis

        config = config.replace(redis_url=ensure_local_redis(Path(config.out)))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes  # a larger body is a JSON 413
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented key order
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    services = build_services(config, background)
    app.extensions["nightrec"] = services
    register_error_handlers(app)
    _register_blueprints(app)
    app.before_request(_start_timer)
    app.after_request(_observe)
    services.versions.check(wait=True)
    return app


def build_services(config: ServeConfig, background: bool = True) -> Services:
    """Build the long-lived objects for `config` (Redis is not contacted yet)."""
    if config.redis_url is None:
        raise ConfigError("no Redis URL: set --redis-url or NIGHTREC_REDIS_URL")
    client = connect(
        config.redis_url,
        cluster=config.redis_cluster,
        timeout=config.redis_timeout,
        connect_timeout=config.redis_timeout,
        retries=1,  # a pooled connection after a Redis restart
    )
    store = ListStore(client, Keys(config.redis_prefix))
    metrics = Metrics(config.metrics_dir)
    encoder = QueryEncoder(config.query_cache_size, metrics.cache_lookup)

    def loader(name: str) -> Version:
        try:
            version = load_version(name, store, Path(config.out), encoder, config)
        except Exception:
            metrics.load_outcome("failed")
            raise
        metrics.load_outcome("ok" if version.complete else "partial")
        return version

    versions = VersionManager(
        store,
        loader,
        check_seconds=config.version_check_seconds,
        retry_seconds=config.version_retry_seconds,
        background=background,
        on_change=metrics.versions,
    )
    return Services(config, store, versions, encoder, metrics)


def _register_blueprints(app: Flask) -> None:
    from serving.routes import explore, items, ops, recommendations, search, users, version

    for module in (recommendations, users, items, search, version, ops, explore):
        app.register_blueprint(module.bp)


def services() -> Services:
    """Return the current app's long-lived objects."""
    return current_app.extensions["nightrec"]  # type: ignore[no-any-return]


def current_version() -> Version:
    """Return the version this request answers from (the same one for its whole life)."""
    if "version" not in g:
        manager = services().versions
        started = time.perf_counter()
        g.version = manager.current()
        if not manager.background and "deadline" in g:
            g.deadline += time.perf_counter() - started  # a load in the request (tests) is no work
    check_deadline("reading the version's lists")
    return g.version  # type: ignore[no-any-return]


def check_deadline(step: str) -> None:
    """Raise a 503 when the request has worked longer than NIGHTREC_REQUEST_TIMEOUT.

    A thread cannot be stopped from outside, so the limit is checked between a request's
    steps: a request past its time ends at its next step instead of adding work to a busy
    worker. Each Redis command is bounded by NIGHTREC_REDIS_TIMEOUT on its own.
    """
    deadline = g.get("deadline")
    if deadline is not None and time.perf_counter() > deadline:
        limit = services().config.request_timeout
        raise ApiError(
            503,
            "timeout",
            f"the request took longer than {limit:g} s (NIGHTREC_REQUEST_TIMEOUT) before "
            f"{step}; retry shortly",
        )


def current_search(version: Version) -> SearchAssets:
    """Return the version's search assets, or raise 503 when its index is not loaded."""
    if version.search is None:
        raise unavailable(
            f"the index of version {version.name} is not loaded ({version.search_error}); "
            "lists are served, search is not"
        )
    check_deadline("searching")
    return version.search


def _start_timer() -> None:
    g.started = time.perf_counter()
    g.deadline = g.started + services().config.request_timeout


def _observe(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    services().metrics.observe(route, request.method, response.status_code, seconds)
    version = g.get("version")
    if access_log.isEnabledFor(logging.INFO):
        entry = {
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": response.status_code,
            "ms": round(seconds * 1000, 2),
            "version": version.name if version is not None else None,
            "remote": request.remote_addr,
        }
        access_log.info(json.dumps(entry, ensure_ascii=False))
    return response
