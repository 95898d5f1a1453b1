"""The bare reference app of `benchmarks.api`: Flask, one Redis GET, jsonify of a small dict.

    NIGHTREC_BENCH_REDIS_URL=redis://127.0.0.1:PORT/0 \
        gunicorn -k gthread -w 2 --threads 4 'benchmarks.reference_app:create_app()'

It reads the same packed list key the API reads for a user (the published version is looked
up once, at start) and answers its length, which is the least any lookup service does: the
ceiling the API's recommendations route is measured against. A benchmark fixture, so it
reads its settings from the environment directly.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, jsonify

from schemas.redis_layout import Keys

URL_VARIABLE = "NIGHTREC_BENCH_REDIS_URL"


def create_app() -> Flask:
    """Build the reference app for the Redis server named by NIGHTREC_BENCH_REDIS_URL.

    Returns:
        The Flask app with one route, `GET /ref/users/<user_id>`.

    Raises:
        RuntimeError: the variable is unset or no version is published.
    """
    url = os.environ.get(URL_VARIABLE)
    if not url:
        raise RuntimeError(f"set {URL_VARIABLE} to the Redis URL")
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    keys = Keys()
    pointer = client.get(keys.current)
    if pointer is None:
        raise RuntimeError(f"no published version in Redis at {url}")
    version = pointer.decode()
    app = Flask(__name__)

    @app.get("/ref/users/<user_id>")
    def user_list(user_id: str) -> Response:
        value = client.get(keys.user(version, user_id))
        return jsonify(
            {"user_id": user_id, "version": version, "bytes": len(value) if value else 0}
        )

    return app
