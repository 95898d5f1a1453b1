"""Recommendations: a user's precomputed list, and a list from an anonymous visitor's history."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from serving.app import current_search, current_version, services
from serving.errors import bad_parameter
from serving.models import (
    SCORE_DECIMALS,
    HistoryRecommendations,
    HistoryRequest,
    Item,
    Recommendations,
)
from serving.openapi import operation
from serving.params import IdListParam, IntParam, check_id, check_int
from serving.ranking import candidates, history_vector

bp = Blueprint("recommendations", __name__)

N = IntParam("n", "how many items to return", 10, 1, lambda c: c.max_n)
EXCLUDE = IdListParam(
    "exclude",
    "comma-separated item ids to leave out (those the page already shows); the list is "
    "filled up from further down so that n items still come back when enough exist",
    lambda c: c.max_exclude,
)


@bp.get("/v1/users/<user_id>/recommendations")
@operation(
    query=(N, EXCLUDE),
    path={"user_id": "the user's id as the job saw it (int ids in decimal)"},
    response=Recommendations,
    errors=(400, 503),
    tag="recommendations",
)
def user_recommendations(user_id: str, n: int, exclude: frozenset[str]) -> Response:
    """Return the user's precomputed top-n list, or the popular list for an unknown user.

    One Redis GET per request: the version pointer is cached for about a second and titles
    come from the version's catalogue in memory. The user's seen items are not in the list.
    """
    check_id("user_id", user_id)
    version = current_version()
    entries = services().store.user_list(version.name, user_id, n + len(exclude))
    source = "personal"
    if entries is None:
        entries, source = version.popular, "popular"
    body = Recommendations(
        user_id=version.typed_user_id(user_id),
        version=version.name,
        generated_at=version.generated_at,
        source=source,  # type: ignore[arg-type]
        items=pick(entries, n, exclude),
    )
    return jsonify(body)


def pick(items: Iterable[Item], n: int, exclude: frozenset[str]) -> list[Item]:
    """Return the first n items whose id is not excluded."""
    if not exclude:
        return list(islice(items, n))
    return list(islice((i for i in items if str(i.item_id) not in exclude), n))


@bp.post("/v1/recommendations")
@operation(
    body=HistoryRequest, response=HistoryRecommendations, errors=(400, 503), tag="recommendations"
)
def history_recommendations() -> Response:
    """Recommend from what an anonymous visitor has seen (cold start).

    The items nearest the mean text embedding of the seen items, those items removed; the
    score is the cosine to that mean. Ids the version does not know are ignored and listed
    in `unknown_item_ids`; when none is known the answer is the popular list.
    """
    wanted = read_history(json_body())
    version = current_version()
    assets = current_search(version)
    rows: list[int] = []
    unknown: list[int | str] = []
    for item_id in wanted.item_ids:
        row = assets.index.row_of(item_id)
        if row is None:
            unknown.append(item_id)
        else:
            rows.append(row)
    if not rows:
        seen = {str(i) for i in wanted.item_ids}
        items = pick(version.popular, wanted.n, frozenset(seen))
        body = HistoryRecommendations(version.name, "popular", items, unknown)
        return jsonify(body)
    seen_rows = np.unique(np.asarray(rows, dtype=np.int64))
    found, scores = candidates(assets, history_vector(assets, seen_rows), wanted.n, seen_rows)
    items = [
        Item(assets.index.item_ids[r], round(float(s), SCORE_DECIMALS), assets.titles[r])
        for r, s in zip(found.tolist(), scores.tolist(), strict=True)
    ]
    return jsonify(HistoryRecommendations(version.name, "history", items, unknown))


def json_body() -> Any:
    """Return the request's JSON body (whatever its content type), or None when it is not
    JSON: malformed, not UTF-8, or nested deeper than the decoder's recursion allows.

    Raises:
        RequestEntityTooLarge: the body is over MAX_CONTENT_LENGTH (a JSON 413). Werkzeug
            refuses a too large Content-Length itself, but a chunked body (no length) it cuts
            at the limit and hands on the cut part: one byte more is read here to tell.
    """
    data = request.get_data()
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    try:
        return request.get_json(force=True, silent=True)
    except RecursionError:  # silent=True covers ValueError only; "[[[[..." raises this
        return None


def read_history(body: Any) -> HistoryRequest:
    """Check a history body: {"item_ids": [ids...], "n": 10}; raise 400 saying what is wrong."""
    config = services().config
    if not isinstance(body, dict):
        raise bad_parameter("body", 'must be a JSON object such as {"item_ids": [1, 2], "n": 10}')
    ids = body.get("item_ids")
    if not isinstance(ids, list) or not ids:
        raise bad_parameter("item_ids", "must be a non-empty list of item ids")
    if len(ids) > config.max_exclude:
        raise bad_parameter("item_ids", f"lists {len(ids)} ids; at most {config.max_exclude}")
    for item_id in ids:
        if isinstance(item_id, bool) or not isinstance(item_id, int | str):
            raise bad_parameter("item_ids", f"ids must be integers or strings (got {item_id!r})")
        if isinstance(item_id, str):
            check_id("item_ids", item_id)
    n = check_int("n", body.get("n", N.default_for(config)), N.minimum, config.max_n)
    return HistoryRequest(item_ids=ids, n=n)
