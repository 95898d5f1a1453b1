"""The Flask application factory (flaskr style) and the accessors the blueprints use.

`create_app(config)` builds the long-lived objects once (Redis client, list store, query
encoder, metrics, version manager), keeps them in `app.extensions["nightrec"]`, registers one
blueprint per resource and the JSON error handlers, and loads the published version before
it returns, so a worker answers from its first request. Around the Flask app, the `Observed`
middleware times each request and counts it in the metrics and the access log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from flask import Flask, Request, current_app, request

from schemas.redis_layout import Keys
from serving.assets import SearchAssets
from serving.config import ConfigError, ServeConfig, load_config
from serving.errors import ApiError, register_error_handlers, unavailable
from serving.json_provider import OrjsonProvider
from serving.logs import AccessLog
from serving.metrics import Metrics
from serving.query_encoder import QueryEncoder
from serving.redis_client import connect
from serving.store import ListStore
from serving.versions import Version, VersionManager, load_version

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

STATE = "nightrec.request"  # the WSGI environ key of a request's RequestState


@dataclass(frozen=True)
class Services:
    """The long-lived objects of one app."""

    config: ServeConfig
    store: ListStore
    versions: VersionManager
    encoder: QueryEncoder
    metrics: Metrics
    access: AccessLog | None = None


def create_app(
    config: ServeConfig | None = None,
    *,
    background: bool = True,
    access_log: BinaryIO | None = None,
) -> Flask:
    """Build the API.

    Args:
        config: the settings; None reads them from NIGHTREC_* variables (and, with no Redis
            URL there, starts or reuses the private redis-server under `out`).
        background: load new versions in a thread, and read the pointer in another one
            whether requests come or not (`VersionManager.watch`); False loads them within
            the request that notices the pointer change (deterministic, for tests).
        access_log: where to write one JSON line per request (`nightrec serve` passes
            stdout when NIGHTREC_ACCESS_LOG is on); None writes none.
    """
    config = config or load_config()
    if config.redis_url is None:
        from serving.local_redis import ensure_local_redis

        config = config.replace(redis_url=ensure_local_redis(Path(config.out)))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes  # a larger body is a JSON 413
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented key order
    services = build_services(config, background, access_log)
    app.extensions["nightrec"] = services
    register_error_handlers(app)
    _register_blueprints(app)
    app.request_class = TrackedRequest
    app.wsgi_app = Observed(app.wsgi_app, services)  # type: ignore[method-assign]
    services.versions.check(wait=True)
    if background:
        services.versions.watch()  # an idle worker follows the pointer too
    return app


def build_services(
    config: ServeConfig, background: bool = True, access_log: BinaryIO | None = None
) -> Services:
    """Build the long-lived objects for `config` (Redis is not contacted yet)."""
    if config.redis_url is None:
        raise ConfigError("no Redis URL: set --redis-url or NIGHTREC_REDIS_URL")
    client = connect(
        config.redis_url,
        cluster=config.redis_cluster,
        timeout=config.redis_timeout,
        connect_timeout=config.redis_timeout,
        retries=1,  # a kept connection after a Redis restart
        per_thread=True,  # each gunicorn thread keeps a connection: a cheaper GET
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
    access = AccessLog(access_log) if access_log is not None else None
    return Services(config, store, versions, encoder, metrics, access)


def _register_blueprints(app: Flask) -> None:
    from serving.routes import explore, items, ops, recommendations, search, users, version

    for module in (recommendations, users, items, search, version, ops, explore):
        app.register_blueprint(module.bp)


def services() -> Services:
    """Return the current app's long-lived objects."""
    return current_app.extensions["nightrec"]  # type: ignore[no-any-return]


def request_state() -> RequestState:
    """Return what is tracked about the current request (see `Observed`)."""
    environ = request.environ
    state = environ.get(STATE)
    if state is None:  # a request context made without the middleware (tests)
        state = environ[STATE] = RequestState(time.perf_counter(), math.inf)
    return state  # type: ignore[no-any-return]


def current_version() -> Version:
    """Return the version this request answers from (the same one for its whole life)."""
    state = request_state()
    if state.version is None:
        manager = services().versions
        started = time.perf_counter()
        state.version = manager.current()
        if not manager.background:  # a load within the request (tests) is not its work
            state.deadline += time.perf_counter() - started
    check_deadline("reading the version's lists", state)
    return state.version


def check_deadline(step: str, state: RequestState | None = None) -> None:
    """Raise a 503 when the request has worked longer than NIGHTREC_REQUEST_TIMEOUT.

    A thread cannot be stopped from outside, so the limit is checked between a request's
    steps: a request past its time ends at its next step instead of adding work to a busy
    worker. Each Redis command is bounded by NIGHTREC_REDIS_TIMEOUT on its own.
    """
    if time.perf_counter() > (state or request_state()).deadline:
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


@dataclass
class RequestState:
    """What the app tracks about one request, kept in its WSGI environ under STATE.

    Attributes:
        started: `time.perf_counter()` when the request reached the app.
        deadline: when it has run past NIGHTREC_REQUEST_TIMEOUT.
        request: Flask's request object, once Flask made it (see `TrackedRequest`).
        version: the version it answers from, once `current_version` chose it.
    """

    started: float
    deadline: float
    request: Request | None = None
    version: Version | None = None

    @property
    def route(self) -> str:
        """The URL rule the request matched, "unmatched" when none did."""
        rule = self.request.url_rule if self.request is not None else None
        return rule.rule if rule is not None else "unmatched"


class TrackedRequest(Request):
    """Flask's request, which leaves itself in the request's RequestState so that the
    middleware can read the URL rule Flask matched after Flask is done with the request."""

    def __init__(self, environ: WSGIEnvironment, *args: Any, **kwargs: Any) -> None:
        super().__init__(environ, *args, **kwargs)
        state = environ.get(STATE)
        if state is not None:
            state.request = self


class Observed:
    """WSGI middleware around the Flask app: starts each request's clock and deadline, and
    once the app has answered, counts the request in the metrics and writes its access line.

    This runs outside Flask's request hooks, where it costs plain attribute reads instead
    of context-local lookups and hook dispatch on every request.
    """

    def __init__(self, app: WSGIApplication, services: Services) -> None:
        self.app = app
        self.metrics = services.metrics
        self.access = services.access
        self.timeout = services.config.request_timeout

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        state = environ[STATE] = RequestState(started, started + self.timeout)
        status = 500  # unless the app starts a response

        def start(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = int(line[:3])
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            self.observe(environ, state, status, time.perf_counter() - started)

    def observe(
        self, environ: WSGIEnvironment, state: RequestState, status: int, seconds: float
    ) -> None:
        method, route = environ.get("REQUEST_METHOD", ""), state.route
        self.metrics.observe(route, method, status, seconds)
        if self.access is not None:
            path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
            self.access.write(
                {
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    "version": state.version.name if state.version is not None else None,
                    "remote": environ.get("REMOTE_ADDR"),
                }
            )
