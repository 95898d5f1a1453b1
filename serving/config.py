"""The API's configuration: one frozen object built once from flags, NIGHTREC_* variables and
defaults (in that order of precedence).

`SETTINGS` is the explicit table of every setting; nothing else in serving/ reads os.environ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the flag or variable."""


def _positive(value: Any) -> bool:
    return value > 0


def _non_negative(value: Any) -> bool:
    return value >= 0


def _fraction(value: Any) -> bool:
    return 0.0 <= value <= 1.0


def _port(value: Any) -> bool:
    return 0 <= value <= 65535


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"expected a redis://, rediss:// or unix:// URL, got {text!r}")
    return text


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: field name, parser, help and range check.

    The default is the field's default in `ServeConfig`; the variable is NIGHTREC_<NAME>.
    """

    name: str
    type: Callable[[str], Any]
    help: str
    check: Callable[[Any], bool] | None = None

    @property
    def env(self) -> str:
        return "NIGHTREC_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("out", str, "artefact directory of the job (runs/<run_id>/ under it)"),
    Setting("redis_url", _redis_url, "Redis URL (default: the private redis-server under out)"),
    Setting("redis_prefix", str, "prefix of every Redis key"),
    Setting("redis_timeout", float, "seconds a Redis command may take", _positive),
    Setting("host", str, "address to listen on"),
    Setting("port", int, "TCP port to listen on", _port),
    Setting("workers", int, "gunicorn worker processes", _positive),
    Setting("threads", int, "threads per worker", _positive),
    Setting(
        "worker_timeout", int, "seconds a worker may stay silent (start-up included)", _positive
    ),
    Setting("max_n", int, "largest n a request may ask for", _positive),
    Setting("max_query_chars", int, "longest search query, in characters", _positive),
    Setting("max_exclude", int, "most item ids in exclude= or a history body", _positive),
    Setting("search_candidates", int, "ScaNN candidates re-ranked per search", _positive),
    Setting("search_cf_weight", float, "weight of the CF part in personal search", _fraction),
    Setting("query_cache_size", int, "query vectors kept (LRU; 0 = none)", _non_negative),
    Setting("encoder", str, "query encoder (default: the encoder the version was built with)"),
    Setting("encoder_device", str, "cpu or cuda (default: cuda when present)"),
    Setting("encoder_threads", int, "torch CPU threads per worker (0 = torch's default)"),
    Setting("version_check_seconds", float, "how long a read pointer is trusted", _positive),
    Setting("version_retry_seconds", float, "wait before retrying a failed load", _positive),
    Setting("metrics_dir", str, "Prometheus multiprocess directory ('' = this process only)"),
    Setting("access_log", _bool, "log one JSON line per request"),
)


_KINDS: dict[Any, str] = {int: "an integer", float: "a number", _bool: "true or false"}
OPTIONAL = frozenset({"redis_url", "encoder", "encoder_device"})  # "" means "not set"


@dataclass(frozen=True)
class ServeConfig:
    """Every setting of one API process, validated."""

    out: str = "var"
    redis_url: str | None = None
    redis_prefix: str = "nightrec"
    redis_timeout: float = 0.5
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 4
    worker_timeout: int = 120
    max_n: int = 100
    max_query_chars: int = 500
    max_exclude: int = 500
    search_candidates: int = 200
    search_cf_weight: float = 0.3
    query_cache_size: int = 1024
    encoder: str | None = None
    encoder_device: str | None = None
    encoder_threads: int = 1
    version_check_seconds: float = 1.0
    version_retry_seconds: float = 10.0
    metrics_dir: str = ""
    access_log: bool = True

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


def redact_url(url: str) -> str:
    """Hide the password of a URL such as redis://:secret@host:6379/0."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


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
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = sorted(set(given) - {s.name for s in SETTINGS})
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}")
    env = env or {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in given:
            raw, source = given[setting.name], setting.flag
        elif setting.env in env:
            raw, source = env[setting.env], setting.env
        else:
            continue
        if raw == "" and setting.name in OPTIONAL:
            values[setting.name] = None
        else:
            values[setting.name] = _parse(setting, raw, source)
    return ServeConfig(**values)


def _parse(setting: Setting, raw: Any, source: str) -> Any:
    try:
        if isinstance(raw, str):
            value = setting.type(raw.strip() if setting.type in (int, float) else raw)
        elif setting.type is float and isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        elif setting.type is int and isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif setting.type is _bool and isinstance(raw, bool):
            value = raw
        else:
            raise ValueError(f"expected {_KINDS.get(setting.type, 'a string')}, got {raw!r}")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if setting.check and not setting.check(value):
        raise ConfigError(f"{source}: {value!r} is out of range ({setting.help})")
    return value


def load_config(flags: Mapping[str, Any] | None = None) -> ServeConfig:
    """Build the config from flags and this process's NIGHTREC_* variables."""
    import os

    return build_serve_config(flags, os.environ)
