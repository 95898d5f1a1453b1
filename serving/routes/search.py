"""Search: items whose text matches a query, personalised for a user when one is given."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from serving.app import check_deadline, current_search, current_version, services
from serving.models import SCORE_DECIMALS, SearchItem, SearchResults
from serving.openapi import operation
from serving.params import IdParam, IntParam, TextParam
from serving.ranking import search

bp = Blueprint("search", __name__)

Q = TextParam(
    "q",
    "the search text; control characters become spaces, blanks are folded",
    required=True,
    max_chars=lambda c: c.max_query_chars,
)
USER_ID = IdParam("user_id", "re-rank for this user and drop the items the user has seen")
N = IntParam("n", "how many items to return", 10, 1, lambda c: c.max_n)


@bp.get("/v1/search")
@operation(query=(Q, USER_ID, N), response=SearchResults, errors=(400, 503), tag="search")
def search_items(q: str, user_id: str | None, n: int) -> Response:
    """Search the catalogue by meaning, optionally personalised.

    The query is encoded as the version's items were (by the ONNX export of their encoder
    when the job found it agrees with them, see NIGHTREC_QUERY_BACKEND), ScaNN gives
    the nearest item texts (`query_score`, a cosine). With a user_id the model knows, the
    user's seen items are dropped, and the unseen matches within NIGHTREC_SEARCH_MARGIN of
    the best query score (at least n of them) are re-ranked by
    `score = query_score * ((1 - w) + w * cf_score)`, where `cf_score` is the user's CF
    score min-max normalised over them and w is NIGHTREC_SEARCH_CF_WEIGHT: the user's taste
    re-orders matching items but cannot pull in one that barely matches. Without a user_id
    (or for a user the model does not know) the order is purely semantic.
    """
    app = services()
    version = current_version()
    assets = current_search(version)
    vector = app.encoder.encode(assets.query_model, q)
    check_deadline("ranking the matches")
    config = app.config
    ranked = search(
        assets,
        vector,
        n,
        config.search_candidates,
        config.search_cf_weight,
        user_id,
        config.search_margin,
    )
    cf = ranked.cf.tolist() if ranked.cf is not None else [None] * len(ranked.rows)
    items = [
        SearchItem(
            item_id=assets.index.item_ids[row],
            title=assets.titles[row],
            score=round(score, SCORE_DECIMALS),
            query_score=round(query, SCORE_DECIMALS),
            cf_score=None if part is None else round(part, SCORE_DECIMALS),
        )
        for row, score, query, part in zip(
            ranked.rows.tolist(), ranked.score.tolist(), ranked.query.tolist(), cf, strict=True
        )
    ]
    body = SearchResults(
        query=q,
        user_id=None if user_id is None else version.typed_user_id(user_id),
        version=version.name,
        ranking="semantic" if ranked.cf is None else "personal",
        items=items,
    )
    return jsonify(body)
