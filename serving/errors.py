"""JSON errors: one `ApiError` and the handlers that turn every failure into JSON.

Every answer that is not a success has the body `{"error": {"code": ..., "message": ...}}`:
an `ApiError` keeps its status; Flask's own HTTP errors (404 for an unknown path, 405, a
malformed body) keep theirs; Redis being down is a 503; anything else is logged with its
traceback and answered with a JSON 500 that carries no traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("nightrec.serving")


class ApiError(Exception):
    """An error answer: HTTP status, a stable machine code and a message for people.

    Attributes:
        status: the HTTP status.
        code: a short snake_case code clients can branch on ("bad_parameter", ...).
        message: what was expected, what was found, and what to do.
        details: extra JSON fields for the error object (the parameter name, ...).
    """

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def to_response(self) -> tuple[Response, int]:
        body = {"code": self.code, "message": self.message, **self.details}
        return jsonify(error=body), self.status


def bad_parameter(name: str, message: str) -> ApiError:
    """Return the 400 error for a query parameter or body field that cannot be used."""
    return ApiError(400, "bad_parameter", f"{name}: {message}", parameter=name)


def unavailable(message: str) -> ApiError:
    """Return the 503 error for a dependency (Redis, the index) that cannot answer."""
    return ApiError(503, "unavailable", message)


def register_error_handlers(app: Flask) -> None:
    """Make every error answer of `app` a JSON body."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(redis.RedisError, _redis_error)
    app.register_error_handler(Exception, _unexpected)


def _api_error(error: ApiError) -> tuple[Response, int]:
    return error.to_response()


def _http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    code = (error.name or "error").lower().replace(" ", "_").replace("'", "")
    return ApiError(status, code, error.description or error.name).to_response()


def _redis_error(error: redis.RedisError) -> tuple[Response, int]:
    log.warning("Redis unavailable: %s: %s", type(error).__name__, error)
    return unavailable(
        f"Redis is unavailable ({type(error).__name__}); retry shortly"
    ).to_response()


def _unexpected(error: Exception) -> tuple[Response, int]:
    log.exception("unexpected error while answering a request")
    return ApiError(500, "internal", "internal error; it has been logged").to_response()
