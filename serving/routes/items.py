"""Items: the similar items of one item."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from serving.app import current_version, services
from serving.errors import ApiError
from serving.models import SimilarItems
from serving.openapi import operation
from serving.params import IntParam, check_id
from serving.routes.recommendations import pick

bp = Blueprint("items", __name__)

N = IntParam("n", "how many items to return", 10, 1, lambda c: c.max_n)


@bp.get("/v1/items/<item_id>/similar")
@operation(
    query=(N,),
    path={"item_id": "the item's id (int ids in decimal)"},
    response=SimilarItems,
    errors=(400, 404, 503),
    tag="items",
)
def similar_items(item_id: str, n: int) -> Response:
    """Return the items most similar to an item, best first.

    Similarity blends the cosine of the items' text embeddings with the cosine of their CF
    factors (computed by the job). 404 when the version's catalogue has no such item.
    """
    check_id("item_id", item_id)
    version = current_version()
    row = version.item_rows.get(item_id)
    if row is None:
        raise ApiError(404, "unknown_item", f"item {item_id!r} is not in version {version.name}")
    entries = services().store.similar_list(version.name, item_id, n) or []
    typed = version.catalogue.item_ids[row]
    body = SimilarItems(item_id=typed, version=version.name, items=pick(entries, n, frozenset()))
    return jsonify(body)
