"""The API's configuration: one frozen object built once from flags, NIGHTREC_* variables and
defaults (in that order of precedence).

`SETTINGS` is the explicit table of every setting; nothing else in serving/ reads os.environ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from schemas.manifest import QUERY_BACKENDS
from schemas.settings import (
    ConfigError,
    Setting,
    choice,
    fraction,
    non_negative,
    parse_bool,
    port,
    positive,
    redact_url,
    resolve,
)

QUERY_BACKEND_CHOICES = ("auto", *QUERY_BACKENDS)

__all__ = ["SETTINGS", "ConfigError", "ServeConfig", "build_serve_config", "load_config"]


def _query_backend(text: str) -> str:
    if text not in QUERY_BACKEND_CHOICES:
        raise ValueError(f"expected one of {', '.join(QUERY_BACKEND_CHOICES)}, got {text!r}")
    return text


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"expected a redis://, rediss:// or unix:// URL, got {text!r}")
    return text


SETTINGS: tuple[Setting, ...] = (
    Setting("out", str, "artefact directory of the job (runs/<run_id>/ under it)"),
    Setting("redis_url", _redis_url, "Redis URL (default: the private redis-server under out)"),
    Setting("redis_prefix", str, "prefix of every Redis key"),
    Setting("redis_cluster", parse_bool, "the Redis URL names a node of a Redis Cluster"),
    Setting("redis_timeout", float, "seconds a Redis command may take", positive),
    Setting("host", str, "address to listen on"),
    Setting("port", int, "TCP port to listen on", port),
    Setting("workers", int, "gunicorn worker processes", positive),
    Setting("threads", int, "threads per worker", positive),
    Setting(
        "worker_timeout", int, "seconds a worker may stay silent (start-up included)", positive
    ),
    Setting("max_n", int, "largest n a request may ask for", positive),
    Setting("max_query_chars", int, "longest search query, in characters", positive),
    Setting("max_exclude", int, "most item ids in exclude= or a history body", positive),
    Setting("max_body_bytes", int, "largest request body, in bytes (larger: a JSON 413)", positive),
    Setting(
        "request_timeout",
        float,
        "seconds a request may work before it is answered 503 (checked between its steps)",
        positive,
    ),
    Setting("search_candidates", int, "ScaNN candidates re-ranked per search", positive),
    Setting("search_cf_weight", float, "weight of the CF part in personal search", fraction),
    Setting(
        "search_margin",
        float,
        "personal search re-ranks matches within this cosine of the best one",
        non_negative,
    ),
    Setting("query_cache_size", int, "query vectors kept (LRU; 0 = none)", non_negative),
    Setting("encoder", str, "query encoder (default: the encoder the version was built with)"),
    Setting("encoder_device", str, "cpu or cuda (default: cuda when present)"),
    Setting("encoder_threads", int, "threads one query encoding uses (torch: 0 = its default)"),
    Setting(
        "query_backend",
        _query_backend,
        "query encoding: auto (the job's measured choice), torch, onnx or onnx-int8",
    ),
    Setting("version_check_seconds", float, "how long a read pointer is trusted", positive),
    Setting("version_retry_seconds", float, "wait before retrying a failed load", positive),
    Setting("metrics_dir", str, "Prometheus multiprocess directory ('' = this process only)"),
    Setting("access_log", parse_bool, "log one JSON line per request"),
    Setting("log_format", choice("text", "json"), "the API's own log lines as text or JSON"),
)


OPTIONAL = frozenset({"redis_url", "encoder", "encoder_device"})  # "" means "not set"


@dataclass(frozen=True)
class ServeConfig:
    """Every setting of one API process, validated."""

    out: str = "var"
    redis_url: str | None = None
    redis_prefix: str = "nightrec"
    redis_cluster: bool = False
    redis_timeout: float = 0.5
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 4
    worker_timeout: int = 120
    max_n: int = 100
    max_query_chars: int = 500
    max_exclude: int = 500
    max_body_bytes: int = 1 << 20
    request_timeout: float = 10.0
    search_candidates: int = 200
    search_cf_weight: float = 0.3
    search_margin: float = 0.1
    query_cache_size: int = 1024
    encoder: str | None = None
    encoder_device: str | None = None
    encoder_threads: int = 2  # a query 20% sooner than 1 thread on 2 cores; same throughput
    query_backend: str = "auto"
    version_check_seconds: float = 1.0
    version_retry_seconds: float = 10.0
    metrics_dir: str = ""
    access_log: bool = True
    log_format: str = "text"

    def replace(self, **changes: Any) -> ServeConfig:
        """Return a copy with some settings changed (values are not re-parsed)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return ServeConfig(**values)

    def public(self) -> dict[str, Any]:
        """Return the settings as plain values with the Redis password hidden."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if values["redis_url"]:
            values["redis_url"] = redact_url(values["redis_url"])
        return values


def build_serve_config(
    flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> ServeConfig:
    """Build the config from flags (highest), NIGHTREC_* variables, then defaults.

    Args:
        flags: setting name to value; None values count as not given.
        env: the environment to read NIGHTREC_* variables from (pass os.environ).

    Raises:
        ConfigError: a value does not parse or is out of range; the message names its flag
            or variable. Unknown flag names are refused too.
    """
    return ServeConfig(**resolve(SETTINGS, flags, env, optional=OPTIONAL))


def load_config(flags: Mapping[str, Any] | None = None) -> ServeConfig:
    """Build the config from flags and this process's NIGHTREC_* variables."""
    import os

    return build_serve_config(flags, os.environ)
