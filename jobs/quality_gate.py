"""The quality gate: a run whose held-out NDCG@K fell too far below the published version's
is not published.

The published version's quality is read from its meta in Redis (the publish stage records the
run's `quality` there), so the gate compares with what is actually served, whichever machine
ran it. Versions measured with another K or protocol are not compared.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from schemas.redis_layout import Keys


def published_quality(client: redis.Redis, keys: Keys) -> tuple[str | None, dict]:
    """Return the current version and the quality its meta records ({} when there is none)."""
    current = client.get(keys.current)
    if current is None:
        return None, {}
    version = current.decode()
    raw = client.get(keys.meta(version))
    try:
        meta = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        meta = {}
    quality = meta.get("quality") if isinstance(meta, dict) else None
    return version, quality if isinstance(quality, dict) else {}


def gate_check(new: dict, old: dict, previous: str | None, max_drop: float) -> dict[str, Any]:
    """Compare the new quality with the published one.

    Args:
        new: this run's manifest quality.
        old: the published version's quality ({} when unknown).
        previous: the published version's name.
        max_drop: largest allowed relative drop of NDCG@K, a fraction.

    Returns:
        {"passed", "reason", "previous_version", "previous_ndcg", "ndcg", "max_drop"}; passed
        is True when there is nothing comparable, with the reason saying so.
    """
    record: dict[str, Any] = {"previous_version": previous, "max_drop": max_drop}
    new_ndcg, old_ndcg = _ndcg(new), _ndcg(old)
    record.update(previous_ndcg=old_ndcg, ndcg=new_ndcg)
    if new_ndcg is None or old_ndcg is None:
        return {**record, "passed": True, "reason": "nothing to compare (no quality on one side)"}
    if (new.get("k"), new.get("protocol")) != (old.get("k"), old.get("protocol")):
        return {**record, "passed": True, "reason": "not compared: another K or protocol"}
    floor = old_ndcg * (1.0 - max_drop)
    if new_ndcg >= floor:
        return {**record, "passed": True, "reason": None}
    k = new["k"]
    drop = 1.0 - new_ndcg / old_ndcg
    reason = (
        f"quality gate: ndcg@{k} {new_ndcg:.4f} is {drop:.1%} below the published version "
        f"{previous}'s {old_ndcg:.4f} (at most {max_drop:.0%} allowed); {previous} stays "
        f"current (--force-publish or NIGHTREC_FORCE_PUBLISH=1 publishes anyway)"
    )
    return {**record, "passed": False, "reason": reason}


def _ndcg(quality: dict) -> float | None:
    model = quality.get("model") if quality else None
    value = model.get("ndcg") if isinstance(model, dict) else None
    return float(value) if isinstance(value, int | float) else None
