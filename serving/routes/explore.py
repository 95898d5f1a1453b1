"""The explorer: one server-rendered page that shows what the served version recommends.

The page (serving/templates/explore.html) carries the version's facts and quality metrics;
its script (serving/static/explore.js) fills the lists from the JSON API. Nothing is fetched
from outside the API process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, render_template, request

from serving.app import current_version, services
from serving.errors import ApiError
from serving.openapi import operation
from serving.params import MAX_ID_CHARS
from serving.routes.version import describe

bp = Blueprint("explore", __name__)

SAMPLE_USERS = 50  # user ids offered in the picker


@dataclass(frozen=True)
class QualityView:
    """A quality record laid out for reading.

    Attributes:
        facts: (name, value) of the entries that are not groups of metrics.
        groups: the names of the entries that are (e.g. "model", "popularity").
        rows: (metric, value in each group) for every metric of any group.
    """

    facts: list[tuple[str, str]]
    groups: list[str]
    rows: list[tuple[str, list[str]]]


@bp.get("/explore")
@operation(media_type="text/html", tag="explorer")
def explore() -> tuple[str, int]:
    """Show the explorer page: history beside recommendations, search beside personal search.

    HTML for people; its script calls the JSON routes. `user_id` and `q` in the query
    string fill the page's inputs. While no version is loaded the page says why (503).
    """
    config = services().config
    args = {
        "user_id": request.args.get("user_id", "")[:MAX_ID_CHARS],
        "query": request.args.get("q", "")[: config.max_query_chars],
        "max_query_chars": config.max_query_chars,
        "cf_weight": config.search_cf_weight,
        "margin": config.search_margin,
    }
    try:
        version = current_version()
    except ApiError as error:
        return render_template("explore.html", info=None, error=error.message, **args), 503
    search = version.search
    page = render_template(
        "explore.html",
        info=describe(version),
        generated=readable_time(version.generated_at),
        quality=quality_view(version.quality),
        users=search.histories.sample_users(SAMPLE_USERS) if search is not None else [],
        error=None if search is not None else f"search is off: {version.search_error}",
        **args,
    )
    return page, 200


def readable_time(iso: str) -> str:
    """Return an ISO-8601 time as "YYYY-MM-DD HH:MM UTC" (as given when it does not parse)."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.utcoffset() is None:  # no zone given: show it as written
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def quality_view(quality: dict[str, Any]) -> QualityView:
    """Lay out a quality record: our model's metrics beside each baseline's, plain facts above.

    The job records "model" and, by name, the "baselines" (see `jobs.evaluate_holdout`):
    those become the table's columns, the model first. A record without "baselines" (an
    older run) gets a column for every dict of metrics it holds. Plain values (k, the
    protocol, ...) are facts; other nested records (histograms, parameters, the gate) are
    left to /v1/version.
    """
    baselines, model = quality.get("baselines"), quality.get("model")
    columns: dict[str, dict[str, Any]]
    if isinstance(baselines, dict):
        columns = {"model": model} if isinstance(model, dict) and _is_metrics(model) else {}
        columns.update((k, v) for k, v in baselines.items() if _is_metrics(v) and k != "model")
    else:
        columns = {name: value for name, value in quality.items() if _is_metrics(value)}
    facts = [
        (name, show(value))
        for name, value in quality.items()
        if value is None or isinstance(value, str | int | float | bool)
    ]
    groups = list(columns)
    metrics: dict[str, None] = {}
    for group in columns.values():
        metrics.update(dict.fromkeys(group))
    rows = [(m, [show(columns[g].get(m)) for g in groups]) for m in metrics]
    return QualityView(facts, groups, rows)


def _is_metrics(value: Any) -> bool:
    """True for a dict with at least one number among its values (a group of metrics)."""
    return isinstance(value, dict) and any(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    )


def show(value: Any) -> str:
    """Return a metric value as text: floats to 4 decimals, booleans as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
