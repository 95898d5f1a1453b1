"""Users: what a user has interacted with, as the version's training data holds it."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from serving.app import current_search, current_version
from serving.models import SCORE_DECIMALS, HistoryItem, UserHistory
from serving.openapi import operation
from serving.params import IntParam, check_id

bp = Blueprint("users", __name__)

N = IntParam("n", "how many interactions to return, most recent first", 20, 1, lambda c: c.max_n)


@bp.get("/v1/users/<user_id>/history")
@operation(
    query=(N,),
    path={"user_id": "the user's id as the job saw it (int ids in decimal)"},
    response=UserHistory,
    errors=(400, 503),
    tag="users",
)
def user_history(user_id: str, n: int) -> Response:
    """Return the user's interactions (item, title, rating, time), most recent first.

    Read from the run's interactions table, loaded with the version's index (503 while it
    is not loaded). A user with no interactions in the version gets an empty list.
    """
    check_id("user_id", user_id)
    version = current_version()
    assets = current_search(version)
    recent = assets.histories.recent(user_id, n)
    items = [
        HistoryItem(
            assets.index.item_ids[row], assets.titles[row], round(rating, SCORE_DECIMALS), timestamp
        )
        for row, rating, timestamp in zip(
            recent.rows.tolist(), recent.ratings.tolist(), recent.times.tolist(), strict=True
        )
    ]
    body = UserHistory(version.typed_user_id(user_id), version.name, recent.total, items)
    return jsonify(body)
