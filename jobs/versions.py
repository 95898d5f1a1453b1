"""Published versions: list them with their metrics, and roll the pointer back to one.

`nightrec versions` reads the registry of published versions (the `{PREFIX}:versions` zset)
and each version's meta; `nightrec rollback VERSION` checks that every list of VERSION is
still in Redis and then moves the pointer in one atomic script, which refuses a version that
garbage collection unregistered in the meantime. Running APIs pick the pointer up as they do
after a publish. Nothing here writes anything but the pointer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jobs.errors import JobError
from schemas.redis_layout import Keys, LayoutError
from serving.redis_client import RedisClient

# KEYS[1] the pointer, KEYS[2] the registry (one hash slot); ARGV[1] the version.
# Returns the previous pointer ("" when there was none), or -1 when the version is not
# registered any more. One script: nothing can unregister the version between check and set.
SWITCH_IF_PUBLISHED = """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return -1 end
local previous = redis.call('GET', KEYS[1]) or ''
redis.call('SET', KEYS[1], ARGV[1])
return previous
"""
SCAN_COUNT = 10_000


class RollbackError(JobError):
    """The version asked for cannot be made current; the pointer was not moved."""


@dataclass(frozen=True)
class VersionInfo:
    """One published version as Redis holds it."""

    version: str
    published_at: float  # seconds since the epoch (the registry's score)
    current: bool
    meta: dict = field(default_factory=dict)  # {} when the meta key is missing or corrupt

    def row(self) -> dict:
        """Return the version as one plain record (what `nightrec versions --json` prints)."""
        quality = self.meta.get("quality") or {}
        model = quality.get("model") if isinstance(quality.get("model"), dict) else {}
        return {
            "version": self.version,
            "current": self.current,
            "published_at": _iso(self.published_at),
            "run_id": self.meta.get("run_id"),
            "users": self.meta.get("users"),
            "items": self.meta.get("items"),
            "top_n": self.meta.get("top_n"),
            "k": quality.get("k"),
            "metrics": {name: model[name] for name in sorted(model)},
        }


def list_versions(client: RedisClient, keys: Keys) -> list[VersionInfo]:
    """Return every published version, newest first (the current one marked)."""
    current = (client.get(keys.current) or b"").decode()
    infos = []
    for name, score in client.zrevrange(keys.versions, 0, -1, withscores=True):
        version = name.decode()
        infos.append(
            VersionInfo(version, float(score), version == current, _meta(client, keys, version))
        )
    return infos


def rollback(client: RedisClient, keys: Keys, version: str) -> str:
    """Make `version` current; return the version that was current before ("" if none).

    Raises:
        RollbackError: the version is not a published one, or some of its keys are gone
            (garbage collection keeps only the newest versions); the pointer is unchanged.
    """
    try:
        keys.version_root(version)
    except LayoutError as exc:
        raise RollbackError(str(exc)) from None
    published = [v.decode() for v in client.zrevrange(keys.versions, 0, -1)]
    if version not in published:
        known = ", ".join(published) or "none"
        raise RollbackError(f"version {version!r} is not published (published: {known})")
    check_complete(client, keys, version)
    previous = client.eval(SWITCH_IF_PUBLISHED, 2, keys.current, keys.versions, version)
    if previous == -1:
        raise RollbackError(f"version {version!r} was unregistered while rolling back")
    return previous.decode() if isinstance(previous, bytes) else str(previous)


def check_complete(client: RedisClient, keys: Keys, version: str) -> None:
    """Raise RollbackError unless the version's meta, items, popular and user lists are all
    there (as many user lists as its meta counts)."""
    meta = _meta(client, keys, version)
    if not meta:
        raise RollbackError(f"version {version!r} has no readable meta key ({keys.meta(version)})")
    missing = [k for k in (keys.items(version), keys.popular(version)) if not client.exists(k)]
    if missing:
        raise RollbackError(f"version {version!r} is incomplete: {', '.join(missing)} missing")
    pattern = f"{keys.version_root(version)}:u:*"
    found = sum(1 for _ in client.scan_iter(match=pattern, count=SCAN_COUNT))
    if found != meta.get("users"):
        raise RollbackError(
            f"version {version!r} is incomplete: {found} user lists in Redis, "
            f"its meta counts {meta.get('users')}"
        )


def format_versions(infos: list[VersionInfo]) -> str:
    """Return the versions as an aligned text table, the current one starred."""
    if not infos:
        return "no published version"
    rows = [r.row() for r in infos]
    names = sorted({m for r in rows for m in r["metrics"]})
    header = ["", "version", "published (UTC)", "users", "items", "top_n"]
    header += [f"{m}@{rows[0]['k']}" for m in names]
    table = [header]
    for r in rows:
        line = ["*" if r["current"] else "", r["version"], r["published_at"]]
        line += [_cell(r["users"]), _cell(r["items"]), _cell(r["top_n"])]
        line += [_cell(r["metrics"].get(m)) for m in names]
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


def versions_json(infos: list[VersionInfo]) -> str:
    """Return the versions as one JSON document (a list, newest first)."""
    return json.dumps([i.row() for i in infos], indent=2)


def _meta(client: RedisClient, keys: Keys, version: str) -> dict:
    raw = client.get(keys.meta(version))
    try:
        meta = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
