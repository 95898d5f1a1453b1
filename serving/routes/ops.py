"""Operations: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from importlib import metadata

import redis
from flask import Blueprint, Response, current_app, jsonify

from serving.app import services
from serving.metrics import CONTENT_TYPE
from serving.models import Health, Readiness
from serving.openapi import build_document, operation

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
@operation(response=Health, tag="operations")
def healthz() -> Response:
    """Say the process is up (nothing else is checked)."""
    return jsonify(Health(status="ok"))


@bp.get("/readyz")
@operation(response=Readiness, errors=(503,), tag="operations")
def readyz() -> tuple[Response, int]:
    """Say whether this worker can answer: Redis answers and its version's index is loaded.

    200 while it serves an older version because the published one failed to load
    (`"stale": true`, with the reason): taking every worker out of service for that would
    turn a failed publish into an outage. /metrics has `nightrec_version_stale` to alert on.
    """
    app = services()
    app.versions.check()
    status = app.versions.status
    try:
        redis_ok = bool(app.store.client.ping())
    except redis.RedisError:
        redis_ok = False
    serving = status.serving
    search = serving.search if serving is not None else None
    ready = redis_ok and search is not None
    reason = status.reason() if redis_ok else "Redis does not answer"
    body = Readiness(
        ready=ready,
        redis=redis_ok,
        serving_version=serving.name if serving is not None else None,
        published_version=status.published,
        index_items=len(search.index) if search is not None else None,
        stale=status.stale,
        reason=reason,
        query_backend=search.query_model.variant if search is not None else None,
    )
    return jsonify(body), 200 if ready else 503


@bp.get("/metrics")
@operation(media_type=CONTENT_TYPE.split(";")[0], tag="operations")
def metrics() -> Response:
    """Return the Prometheus metrics (text exposition format)."""
    return Response(services().metrics.render(), mimetype=CONTENT_TYPE)


@bp.get("/openapi.json")
@operation(tag="operations")
def openapi() -> Response:
    """Return this OpenAPI document (generated from the routes, parameters and models)."""
    return jsonify(build_document(current_app, services().config, api_version()))


def api_version() -> str:
    """Return the installed package's version (the API's version in the document)."""
    try:
        return metadata.version("nightrec")
    except metadata.PackageNotFoundError:
        return "0.0.0"
